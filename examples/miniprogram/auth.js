'use strict'

// mpauthx's client side, for a mini-program: copy this file into the mini-program (for
// example as utils/auth.js) and send every request to your backend through `auth.request`.
//
//   const { createAuth } = require('./utils/auth.js')
//   const auth = createAuth({ baseUrl: 'https://api.example.com' })
//   auth.request({ url: '/me' }).then((res) => console.log(res.statusCode, res.data))
//
// The first request logs in: wx.login()'s code goes to the backend's login route (POST
// `{ code }`, answered with `{ token }`), and the token is kept with wx.setStorageSync. Each
// request carries it as `Authorization: Bearer <token>`. When the backend answers 401 with
// status_code 6007 (the token expired, was revoked or replaced), the helper logs in once more
// and sends the request again, once: a second refusal is handed back as it came. Requests
// refused at the same time share one login.

const INVALID_ACCESS_TOKEN = 6007

/**
 * @param {object} config
 * @param {string} config.baseUrl the backend, e.g. 'https://api.example.com'; a request
 *   whose url starts with '/' goes there
 * @param {string} [config.loginPath] the login route, '/login' by default
 * @param {string} [config.storageKey] where the token is kept, 'mpauthx.token' by default
 * @param {object} [config.wx] the wx API, the mini-program's global `wx` by default
 */
function createAuth(config) {
  const api = config.wx || wx
  const storageKey = config.storageKey || 'mpauthx.token'
  const loginPath = config.loginPath || '/login'
  let loggingIn = null // the login in flight, shared by every request that needs it

  const url = (path) => (path.charAt(0) === '/' ? config.baseUrl + path : path)

  // A wx API call as a promise: `success` resolves, `fail` rejects.
  const call = (method, options) =>
    new Promise((resolve, reject) => {
      api[method](Object.assign({}, options, { success: resolve, fail: reject }))
    })

  /** The kept token, or '' when there is none. */
  const storedToken = () => api.getStorageSync(storageKey) || ''

  /** Logs in (once, however many callers ask at the same time); resolves with the new token. */
  function login() {
    if (!loggingIn) {
      loggingIn = call('login', {})
        .then((res) => call('request', { url: url(loginPath), method: 'POST', data: { code: res.code } }))
        .then((res) => {
          if (res.statusCode !== 200 || !res.data || typeof res.data.token !== 'string') {
            const error = new Error('login failed: HTTP ' + res.statusCode)
            error.response = res
            throw error
          }
          api.setStorageSync(storageKey, res.data.token)
          return res.data.token
        })
      const done = () => {
        loggingIn = null
      }
      loggingIn.then(done, done)
    }
    return loggingIn
  }

  /** Forgets the token: the next request logs in again. */
  function logout() {
    api.removeStorageSync(storageKey)
  }

  function send(options, token) {
    const header = Object.assign({}, options.header, { Authorization: 'Bearer ' + token })
    return call('request', Object.assign({}, options, { url: url(options.url), header }))
  }

  const tokenRefused = (res) => res.statusCode === 401 && !!res.data && res.data.status_code === INVALID_ACCESS_TOKEN

  /**
   * wx.request's options (url, method, data, header, …) without success/fail; resolves with
   * wx.request's result ({ statusCode, data, header }) whatever the status, rejects when the
   * request or the login could not be made.
   */
  function request(options) {
    const token = storedToken()
    return (token ? Promise.resolve(token) : login()).then((used) =>
      send(options, used).then((res) => {
        if (!tokenRefused(res)) return res
        // Forget the refused token, unless a request refused at the same time already logged in.
        if (storedToken() === used) logout()
        const latest = storedToken()
        return (latest ? Promise.resolve(latest) : login()).then((fresh) => send(options, fresh))
      }),
    )
  }

  return { request, login, logout }
}

module.exports = { createAuth }
