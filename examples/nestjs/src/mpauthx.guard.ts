import {
  CanActivate,
  ExecutionContext,
  Inject,
  Injectable,
  Logger,
  ServiceUnavailableException,
  UnauthorizedException,
} from '@nestjs/common'
import type { Request, Response } from 'express'
import mpauthx = require('../../..') // in your project: import mpauthx = require('mpauthx')
import { MPAUTHX } from './mpauthx.module'

const { statusCode } = mpauthx.constants

// The public answers, the same as mpauthx's own middleware gives. What went wrong inside (a
// Redis address, a file name) is in the error's detail: for the server's log, not the client.
const UNAUTHORIZED = {
  status_code: statusCode.invalidAccessToken,
  status_message: 'token is missing, invalid or expired',
}
const UNAVAILABLE = {
  status_code: statusCode.databaseRelatedError,
  status_message: 'authentication is temporarily unavailable, try again',
}

/**
 * Admits a request carrying a live token of this app's sku (`Authorization: Bearer <token>`
 * or `x-access-token`) and puts who it is on `request.mpauthx` (see `@User()`). Answers 401
 * for a missing, unknown, expired or other-sku token and 503 when Redis cannot answer.
 */
@Injectable()
export class MpauthxGuard implements CanActivate {
  private readonly logger = new Logger(MpauthxGuard.name)

  constructor(@Inject(MPAUTHX) private readonly auth: mpauthx.Mpauthx) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const http = context.switchToHttp()
    const request = http.getRequest<Request>()
    try {
      request.mpauthx = (await this.auth.authenticate(request)) ?? undefined
      return true
    } catch (err) {
      if (!(err instanceof mpauthx.MpauthxError)) throw err
      if (err.code === statusCode.invalidAccessToken) {
        http.getResponse<Response>().setHeader('WWW-Authenticate', 'Bearer realm="mpauthx"')
        throw new UnauthorizedException(UNAUTHORIZED)
      }
      if (err.code === statusCode.databaseRelatedError) {
        this.logger.error(`token check failed: ${err.detail}`)
        http.getResponse<Response>().setHeader('Retry-After', '1')
        throw new ServiceUnavailableException(UNAVAILABLE)
      }
      throw err
    }
  }
}
