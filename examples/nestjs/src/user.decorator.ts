import { createParamDecorator, ExecutionContext } from '@nestjs/common'
import type { Request } from 'express'
import type mpauthx = require('../../..') // in your project: import type mpauthx = require('mpauthx')

/**
 * Who the request comes from, as `MpauthxGuard` found it: `@User() user: mpauthx.RequestAuth`,
 * or one field of it: `@User('openId') openId: string`.
 */
export const User = createParamDecorator((field: keyof mpauthx.RequestAuth | undefined, context: ExecutionContext) => {
  const auth = context.switchToHttp().getRequest<Request>().mpauthx
  return field === undefined ? auth : auth?.[field]
})
