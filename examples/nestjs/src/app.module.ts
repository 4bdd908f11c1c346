import { Module } from '@nestjs/common'
import { AppController } from './app.controller'
import { MpauthxModule } from './mpauthx.module'

const { APP_ID, APP_SECRET, SKU = 'myapp', DB = 'users.db', REDIS_PASS } = process.env
if (!APP_ID || !APP_SECRET) throw new Error("set APP_ID and APP_SECRET to your mini-program's AppID and AppSecret")

@Module({
  // Redis: MPAUTHX_REDIS_URL (default redis://127.0.0.1:6379), or `options: { redisUrl }`.
  imports: [MpauthxModule.forRoot({ appId: APP_ID, appSecret: APP_SECRET, sku: SKU, db: DB, redisPass: REDIS_PASS })],
  controllers: [AppController],
})
export class AppModule {}
