import {
  BadGatewayException,
  BadRequestException,
  Body,
  Controller,
  Get,
  HttpCode,
  Inject,
  Logger,
  Post,
  ServiceUnavailableException,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common'
import mpauthx = require('../../..') // in your project: import mpauthx = require('mpauthx')
import { MPAUTHX } from './mpauthx.module'
import { MpauthxGuard } from './mpauthx.guard'
import { User } from './user.decorator'

const { statusCode } = mpauthx.constants

@Controller()
export class AppController {
  private readonly logger = new Logger(AppController.name)

  constructor(@Inject(MPAUTHX) private readonly auth: mpauthx.Mpauthx) {}

  /** The mini-program sends `wx.login()`'s code; it gets its token back. */
  @Post('login')
  @HttpCode(200)
  async login(@Body('code') code: string): Promise<{ token: string }> {
    try {
      const { response: token } = await this.auth.login(code)
      return { token }
    } catch (err) {
      throw this.loginFailure(err)
    }
  }

  @Get('me')
  @UseGuards(MpauthxGuard)
  me(@User() user: mpauthx.RequestAuth): { openId: string; sku: string } {
    return { openId: user.openId, sku: user.sku }
  }

  // How a login failure answers: the client's fault, WeChat's, or the stores'.
  private loginFailure(err: unknown): unknown {
    if (!(err instanceof mpauthx.MpauthxError)) return err
    const body = { status_code: err.code, status_message: err.message }
    switch (err.code) {
      case statusCode.requiredParamsMissingError:
        return new BadRequestException(body)
      case statusCode.sessionKeyAndOpenIdRequestError:
        return new BadGatewayException(body)
      case statusCode.databaseRelatedError:
        // Its detail names the Redis server or the SQLite file: log it, don't send it.
        this.logger.error(`login failed: ${err.detail}`)
        return new ServiceUnavailableException({ status_code: err.code, status_message: 'try again later' })
      default:
        return new UnauthorizedException(body)
    }
  }
}
