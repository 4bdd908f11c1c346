/**
 * mpauthx: WeChat Mini-program login and access tokens, a native drop-in for mpauthx 1.3.2.
 */

/**
 * Creates an independent instance. Throws `TypeError` or `RangeError` for bad arguments;
 * connects lazily, so it never blocks.
 *
 * @param appId the mini-program's AppID
 * @param appSecret the mini-program's AppSecret
 * @param sku the product the tokens are for; must not contain `|`
 * @param db the SQLite database holding the `user` table
 * @param redisPass the Redis password, whatever `options.redisUrl` says; `null` for none
 * @param tokenTTL seconds a token lives, a positive integer (default 259200, three days)
 */
declare function mpauthx(
  appId: string,
  appSecret: string,
  sku: string,
  db: mpauthx.Database,
  redisPass?: string | null,
  tokenTTL?: number,
  options?: mpauthx.Options,
): mpauthx.Mpauthx

declare namespace mpauthx {
  /** The status codes of mpauthx 1.3.2; every rejection's `code` is one of them. */
  interface StatusCodes {
    readonly success: 1
    /** Redis or SQLite failed, could not be reached, or the instance is closed. */
    readonly databaseRelatedError: 6000
    /** A parameter is missing, empty or not a string. */
    readonly requiredParamsMissingError: 6001
    readonly httpError: 6002
    readonly responseIsNull: 6003
    readonly jsonParsedError: 6004
    readonly httpResponseErrorEvent: 6005
    readonly httpRequestErrorEvent: 6006
    readonly internetConnectionError: 6006
    /** The token is not live: unknown, expired or replaced. */
    readonly invalidAccessToken: 6007
    /** The jscode2session exchange failed (network, timeout, HTTP status, body, or a WeChat errcode). */
    readonly sessionKeyAndOpenIdRequestError: 6008
    /** The openid from jscode2session differs from the decrypted openId. */
    readonly openIdOrUnionIdNotMatch: 6009
    /** `refreshToken` was given a user id that the `user` table does not hold. */
    readonly userNotExistInDB: 6010
    /** The encrypted user data could not be decrypted, or its watermark is another app's. */
    readonly userInfoDecryptionError: 6011
    /** An internal failure of the library. */
    readonly unknownError: 9999
  }

  interface Constants {
    readonly statusCode: StatusCodes
  }

  /** A status code of mpauthx. */
  type StatusCode = StatusCodes[keyof StatusCodes]

  /** How every promise of an instance rejects. */
  class MpauthxError extends Error {
    readonly name: 'MpauthxError'
    /** One of `constants.statusCode` (never `success`). */
    readonly code: Exclude<StatusCode, 1>
  }

  /** What `authorize` and `refreshToken` resolve with. */
  interface Success<T> {
    status_code: 1
    status_message: 'OK'
    response: T
  }

  /** The new options of this package; all are optional. */
  interface Options {
    /** Redis to keep tokens in. Default: env `MPAUTHX_REDIS_URL`, else `redis://127.0.0.1:6379`. */
    redisUrl?: string
    /** Where WeChat's API is. Default: env `MPAUTHX_WECHAT_API_BASE`, else `https://api.weixin.qq.com`. */
    wechatApiBase?: string
    /** Bound on the whole jscode2session exchange, in milliseconds. Default 5000. */
    httpTimeoutMs?: number
  }

  /** The SQLite database: a file path, a node-sqlite3 `Database` or a better-sqlite3 `Database`. */
  type Database = string | { readonly filename: string } | { readonly name: string }

  /** A token: `<userId>|<sku>|<64 lowercase hex>`. */
  type Token = string

  interface Mpauthx {
    /**
     * Logs a mini-program user in with the `code` of `wx.login` and the `encryptedData` and
     * `iv` of `wx.getUserInfo`: resolves with the user's live token for this sku, or a new one
     * (registering the user in the `user` table first).
     */
    authorize(code: string, encryptedData: string, iv: string): Promise<Success<Token>>
    /** Replaces the user's token for this sku with a new one; the user must be in the `user` table. */
    refreshToken(userId: string): Promise<Success<Token>>
    /** Resolves when the token is live; rejects with 6007 when it is not, 6000 when Redis cannot answer. */
    isTokenValid(token: Token): Promise<void>
    /** The user id (openId or unionId) of a token: the part before the first `|`, or `''`. */
    extractOpenId(token: Token): string
    /** The sku of a token of exactly three `|`-separated parts, else `null`. */
    extractSku(token: Token): string | null
    /** Closes the Redis connection and the SQLite file; later calls reject with 6000. */
    close(): Promise<void>
    readonly constants: Constants
  }

  /** The status codes, also on every instance. */
  const constants: Constants
}

export = mpauthx
