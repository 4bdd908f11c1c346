'use strict'

// Closes mpauthx's Redis connection and SQLite file when Egg stops.
class AppBootHook {
  constructor(app) {
    this.app = app
  }

  async beforeClose() {
    await this.app.mpauthx.close()
  }
}

module.exports = AppBootHook
