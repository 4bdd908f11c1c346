import { DynamicModule, Global, Inject, Module, OnApplicationShutdown } from '@nestjs/common'
import mpauthx = require('../../..') // in your project: import mpauthx = require('mpauthx')

/** The injection token of the mpauthx instance: `@Inject(MPAUTHX) auth: mpauthx.Mpauthx`. */
export const MPAUTHX = Symbol('mpauthx')

/** The factory's arguments, as named in mpauthx's README. */
export interface MpauthxConfig {
  appId: string
  appSecret: string
  sku: string
  db: string
  redisPass?: string | null
  tokenTTL?: number
  options?: mpauthx.Options
}

/**
 * One mpauthx instance for the whole application, closed when Nest shuts down. Global, so
 * that every module's controllers and guards can inject it.
 */
@Global()
@Module({})
export class MpauthxModule implements OnApplicationShutdown {
  static forRoot(config: MpauthxConfig): DynamicModule {
    const instance = {
      provide: MPAUTHX,
      useFactory: () => mpauthx(config.appId, config.appSecret, config.sku, config.db, config.redisPass, config.tokenTTL, config.options),
    }
    return { module: MpauthxModule, providers: [instance], exports: [MPAUTHX] }
  }

  constructor(@Inject(MPAUTHX) private readonly auth: mpauthx.Mpauthx) {}

  onApplicationShutdown(): Promise<void> {
    return this.auth.close()
  }
}
