'use strict'

module.exports = (app) => {
  const { router, controller } = app
  router.post('/login', controller.auth.login)
  router.get('/me', controller.auth.me)
}
