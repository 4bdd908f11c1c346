// A NestJS (Express platform) backend for a mini-program: `POST /login` trades wx.login()'s
// code for a token, `GET /me` needs that token (MpauthxGuard).
//
//   npx tsc -p examples/nestjs
//   APP_ID=wx... APP_SECRET=... SKU=myapp node examples/nestjs/dist/main.js
//
// Users: the SQLite file DB (default users.db). PORT defaults to 3000.

import { NestFactory } from '@nestjs/core'
import { AppModule } from './app.module'

async function bootstrap(): Promise<void> {
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] })
  await app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1')
  console.log(`listening on ${await app.getUrl()}`)
  // app.close() runs MpauthxModule's onApplicationShutdown, which closes mpauthx.
  process.once('SIGTERM', () => void app.close())
}

void bootstrap()
