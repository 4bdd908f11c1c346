/**
 * mpauthx: WeChat Mini-program login and access tokens, a native drop-in for mpauthx 1.3.2.
 *
 * ```ts
 * import mpauthx = require('mpauthx')            // or: import mpauthx from 'mpauthx'
 * const auth = mpauthx(appId, appSecret, 'myapp', 'users.db', null, 259200)
 * ```
 */
declare namespace mpauthx {
  /** The module: the factory, with the status codes and the error class beside it. */
  interface Module extends Factory {
    /** The factory again, for `import mpauthx from 'mpauthx'` in transpiled ES modules. */
    readonly default: Module
    /** The status codes of mpauthx 1.3.2. */
    readonly constants: Constants
    /** The class of every rejection; use with `instanceof`. */
    readonly MpauthxError: MpauthxErrorConstructor
    /** User-store adapters over the application's own pool, for `options.userStore`. */
    readonly userStores: UserStores
    /** The names of the `node:diagnostics_channel` channels every instance publishes on. */
    readonly channels: Channels
  }

  /** The names of the diagnostics channels (docs/operating.md). */
  interface Channels {
    /** The TracingChannel of each traced call, such as `mpauthx:authorize`. */
    readonly calls: { readonly [M in TracedMethod]: `mpauthx:${M}` }
    readonly wechat: 'mpauthx:wechat'
    readonly store: 'mpauthx:store'
    readonly cache: 'mpauthx:cache'
  }

  /** Profile fields a login may carry, as the `user` table's columns name them. */
  interface UserProfile {
    nickName?: string
    gender?: number
    language?: string
    city?: string
    province?: string
    country?: string
    avatarUrl?: string
  }

  /**
   * Where registered users live when not in the SQLite `user` table (`options.userStore`).
   * Every method may be called concurrently, from several instances and processes.
   */
  interface UserStore {
    /** Whether the user is registered (`refreshToken` rejects 6010 when not). */
    hasUser(userId: string): Promise<boolean>
    /**
     * Adds the user with `profile` unless present, **in one atomic step** (e.g. `INSERT … ON
     * CONFLICT (openId) DO NOTHING` on the primary key), resolving `true` when it added the
     * user and `false` only when a user with that id was there already: 20 concurrent logins
     * of a new user must leave one row. After `false` the library asks `hasUser`, and a login
     * the store did not register fails with 6000; any other refusal should reject. A rejection's
     * `code` (or `name`) is named in `err.message`, its message only in `err.detail`.
     */
    addUser(userId: string, profile: UserProfile): Promise<boolean>
    /**
     * With `profileWrites: 'always'`: writes the real values of a returning user's profile
     * (WeChat's placeholders left out) over the stored ones. Optional.
     */
    updateProfile?(userId: string, profile: UserProfile): Promise<void>
    /**
     * With `profileWrites: 'insert'` (the default): writes the real values of a returning
     * user's profile only where the stored value is empty (SQL `NULL`), never over a value.
     * Optional; without it a returning user's data is left alone.
     */
    fillProfile?(userId: string, profile: UserProfile): Promise<void>
    /**
     * Checks that the store can be used (its table and id column exist), rejecting when not;
     * called by `auth.ready()` and before an instance's first login. Optional.
     */
    ready?(): Promise<unknown>
  }

  /** Options of the shipped adapters. */
  interface SqlUserStoreOptions {
    /** The table. Default `'user'`. */
    table?: string
    /** The user-id column, which must be the primary key or unique. Default `'openId'`. */
    idColumn?: string
    /**
     * The profile columns to write (matched to the profile fields in any case). Default: the
     * table's columns that match a profile field, read once from `information_schema`.
     */
    profileColumns?: readonly string[]
  }

  /** `mpauthx.userStores`: adapters that run on the pool the application already has. */
  interface UserStores {
    /**
     * PostgreSQL through a `pg` Pool (or Client): `INSERT … ON CONFLICT (<idColumn>) DO
     * NOTHING`, values bound; a profile the table refuses is left out and the id added alone.
     */
    postgres(pool: { query(text: string, values?: unknown[]): Promise<unknown> }, options?: SqlUserStoreOptions): UserStore
    /**
     * MySQL or MariaDB through a `mysql2/promise` pool (or connection): server-side prepared
     * statements (`execute()`), a plain `INSERT` whose duplicate id means "already there", and
     * server warnings (a truncated or converted value) counted as a refused profile.
     */
    mysql(
      pool: { query(sql: string, values?: unknown[]): Promise<unknown>; execute(sql: string, values?: unknown[]): Promise<unknown> },
      options?: SqlUserStoreOptions,
    ): UserStore
  }

  /** The factory of mpauthx 1.3.2, with one more optional argument, `options`. */
  interface Factory {
    /**
     * Creates an independent instance. Throws `TypeError` or `RangeError` for bad arguments;
     * connects lazily, so it never blocks.
     *
     * @param appId the mini-program's AppID
     * @param appSecret the mini-program's AppSecret
     * @param sku the product the tokens are for; must not contain `|`
     * @param db the SQLite database holding the `user` table; `null` with `options.userStore`
     * @param redisPass the Redis password, whatever `options.redisUrl` says; `null` for none
     * @param tokenTTL seconds a token lives, a positive integer or a string of digits (as
     *   `process.env` gives it, which 1.3.2 accepted); default 259200, three days
     * @param options the settings that mpauthx 1.3.2 did not have; all optional
     */
    (
      appId: string,
      appSecret: string,
      sku: string,
      db: Database,
      redisPass?: string | null,
      tokenTTL?: number | string | null,
      options?: Options,
    ): Mpauthx
  }

  /** The status codes of mpauthx 1.3.2; every rejection's `code` is one of them. */
  interface StatusCodes {
    /** The `status_code` of every resolved call. */
    readonly success: 1
    /** Redis or SQLite failed, could not be reached, or the instance is closed. */
    readonly databaseRelatedError: 6000
    /** A parameter is missing, empty, too long or not a string. */
    readonly requiredParamsMissingError: 6001
    /** Kept from 1.3.2, which used it for HTTP failures; this package reports them as 6008. */
    readonly httpError: 6002
    /** Kept from 1.3.2 (an empty WeChat reply); this package reports it as 6008. */
    readonly responseIsNull: 6003
    /** Kept from 1.3.2 (an unparsable WeChat reply); this package reports it as 6008. */
    readonly jsonParsedError: 6004
    /** Kept from 1.3.2 (an HTTP response error event); this package reports it as 6008. */
    readonly httpResponseErrorEvent: 6005
    /** Kept from 1.3.2 (an HTTP request error event); this package reports it as 6008. */
    readonly httpRequestErrorEvent: 6006
    /** Kept from 1.3.2, the same code as `httpRequestErrorEvent`; reported as 6008. */
    readonly internetConnectionError: 6006
    /** The token is not live: missing, unknown, expired, replaced or of another sku (middleware). */
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

  /** `constants` of the module and of every instance. */
  interface Constants {
    /** The status codes by name. */
    readonly statusCode: StatusCodes
  }

  /** A status code of mpauthx. */
  type StatusCode = StatusCodes[keyof StatusCodes]

  /** A status code a promise of this package rejects with. */
  type ErrorCode = Exclude<StatusCode, 1>

  /**
   * The HTTP status of an error code: 400 (6001, 6009, 6011), 401 (6007), 404 (6010), 502
   * (6002–6006, 6008), 503 (6000), 500 (9999).
   */
  type HttpStatus = 400 | 401 | 404 | 500 | 502 | 503

  /** How every promise of an instance rejects. */
  interface MpauthxError extends Error {
    /** Always `'MpauthxError'`. */
    readonly name: 'MpauthxError'
    /** One of `constants.statusCode` (never `success`). */
    readonly code: ErrorCode
    /**
     * The HTTP status of `code` (see `HttpStatus`), which Express's final handler, Koa and
     * Fastify answer, as they do for `http-errors` errors; the integrations answer it too.
     */
    readonly status: HttpStatus
    /** Whether `message` is meant for clients: `true` when `status` is below 500. */
    readonly expose: boolean
    /** What failed and where, for logs and never for clients; the message when there is no more to say. */
    readonly detail: string
  }

  /** `MpauthxError` as a class: `err instanceof mpauthx.MpauthxError` narrows a rejection. */
  interface MpauthxErrorConstructor {
    /** Builds an error like the library's own, for instance to reject in a test double. */
    new (code: ErrorCode, message: string, options?: { cause?: unknown; detail?: string }): MpauthxError
    readonly prototype: MpauthxError
  }

  /** What `authorize` and `refreshToken` resolve with, as mpauthx 1.3.2 did. */
  interface Success<T> {
    /** Always `constants.statusCode.success`. */
    status_code: 1
    /** Always `'OK'`. */
    status_message: 'OK'
    /** The result: the token, for `authorize` and `refreshToken`. */
    response: T
  }

  /** How `rediss://` servers are trusted (`options.redisTls`); PEM text or the Buffer of a PEM file. */
  interface RedisTlsOptions {
    /** CA certificates trusted in addition to the system's roots, e.g. your cloud's CA file. */
    ca?: string | Buffer
    /** The client certificate (chain), for servers that require one; needs `key`. */
    cert?: string | Buffer
    /** The client certificate's private key; needs `cert`. */
    key?: string | Buffer
    /**
     * Whether the server's certificate and host name are checked. Default `true`; `false` is
     * unsafe (anyone between you and Redis can read and change sessions) and meant for tests.
     */
    rejectUnauthorized?: boolean
  }

  /** Redis Sentinel (`options.redisSentinel`): the sentinels that name the master. */
  interface RedisSentinelOptions {
    /** `redis://host:port` (or, all of them, `rediss://`) URLs of some of the sentinels. */
    nodes: readonly string[]
    /** The master's name in the sentinels' configuration (`sentinel monitor <name> …`). */
    masterName: string
    /** The sentinels' own password, when they have one (`requirepass` in their config). */
    sentinelPassword?: string
  }

  /** The settings that mpauthx 1.3.2 did not have; all are optional, unknown keys throw. */
  interface Options {
    /**
     * Redis to keep tokens in, `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS.
     * Default: env `MPAUTHX_REDIS_URL`, else `redis://127.0.0.1:6379`.
     */
    redisUrl?: string
    /**
     * TLS settings for `rediss://` URLs (in `redisUrl` or `redisClusterNodes`); given with
     * `redis://` URLs it throws `RangeError`. Without it, `rediss://` trusts the system's roots.
     */
    redisTls?: RedisTlsOptions
    /**
     * Redis Sentinel instead of `redisUrl`: the master the sentinels name, asked again after a
     * failover. The master's password is `redisPass`; TLS settings come from `redisTls`.
     */
    redisSentinel?: RedisSentinelOptions
    /**
     * A Redis Cluster to keep tokens in, instead of `redisUrl`: `redis://` (or, all of them,
     * `rediss://`) URLs of some of its
     * nodes (the rest are discovered). Default: env `MPAUTHX_REDIS_CLUSTER_NODES`, comma-separated.
     * `redisPass` applies to every node. Giving both this and `redisUrl` throws `RangeError`.
     */
    redisClusterNodes?: readonly string[]
    /** Where WeChat's API is. Default: env `MPAUTHX_WECHAT_API_BASE`, else `https://api.weixin.qq.com`. */
    wechatApiBase?: string
    /** Bound on the whole jscode2session exchange, in milliseconds. Default 5000. */
    httpTimeoutMs?: number
    /**
     * Where tokens live: `'redis'` (default) or `'sqlite'`, a table `mpauthx_session` in the
     * `db` file with the same rules (TTL, reuse, refresh, revoke, one live token per user and
     * sku), for a single server without Redis.
     */
    tokenStore?: 'redis' | 'sqlite'
    /**
     * Live tokens each instance remembers, so that `isTokenValid`, `verifyToken` and the
     * middleware answer most checks from memory, kept exact by Redis's client-side tracking
     * (see docs/how-checks-stay-exact.md). Default 10000 (about 2 MB); `0` turns the cache off.
     * The SQLite store never answers from memory.
     */
    validationCacheSize?: number
    /**
     * Sessions that live while used: a token checked (`isTokenValid`, `verifyToken`,
     * `authenticate`, the middleware) when less than half its TTL remains gets its whole
     * `tokenTTL` back, with its index, so the next login still reuses it. At most one write per
     * token per half-TTL, never one per check. Default `false`.
     */
    slidingTtl?: boolean
    /**
     * Receives one event per step of every call (diagnostics); without it, `DEBUG=mpauthx`
     * writes the events to stderr. Silent by default. Events carry no secret, token or user id.
     */
    logger?: (event: DiagnosticEvent) => void
    /**
     * Users in the application's own database instead of the SQLite `user` table; `db` may
     * then be `null` (unless `tokenStore: 'sqlite'`). See `mpauthx.userStores` for PostgreSQL
     * and MySQL. A store that throws, rejects or times out makes the call reject with 6000
     * naming the store method.
     */
    userStore?: UserStore
    /** How long a `userStore` call may take before the login rejects with 6000. Default 5000. */
    userStoreTimeoutMs?: number
    /**
     * What a login writes of the decrypted profile into the user's row (or user store).
     * `'insert'` (default): the whole profile when the user is registered, later only into
     * empty (`NULL`) columns, never over a value the app stored; `'always'`: later logins write
     * real values over the row's; `'never'`: the row gets the user id only, as 1.3.2 did.
     * WeChat's placeholders (nickname `微信用户`, its grey default avatar, empty strings, gender
     * 0) are written only into a row being created. A bad value throws `RangeError`.
     */
    profileWrites?: 'insert' | 'always' | 'never'
    /**
     * Seconds Redis keeps the record of a registered user (`mpauthx|user|<sku>|<userId>`)
     * after its latest token was issued or slid, never less than `tokenTTL`: a server whose
     * database lacks the user's row can `refreshToken` users seen within it. Default 2592000
     * (30 days).
     */
    registrationTtl?: number
    /**
     * How long, in ms, `revokeUser` may spend on its `SCAN` of the Redis keyspace for the
     * user's tokens (each `SCAN` step has its own 1.5 s deadline); past it, `revokeUser`
     * rejects with 6000 and what it revoked stays revoked. A positive integer; default 10000.
     */
    revokeUserScanMs?: number
  }

  /** One step of a call, for `options.logger`. */
  interface DiagnosticEvent {
    /** The method called, such as `authorize`, `login`, `refreshToken` or `isTokenValid`. */
    method: string
    /** What happened, such as `wechat.request`, `wechat.response`, `token.issued`; `done` last. */
    step: string
    /** When the step happened, in ms since the epoch (events are delivered when the call ends). */
    time: number
    /** Milliseconds since the call began. */
    elapsedMs: number
    /** Details without secrets, such as `HTTP 200`, or the rejection's message for `done`. */
    detail: string
    /** On `done` only: the call's status code (1 when it resolved). */
    statusCode?: StatusCode
  }

  /** A call traced on the `node:diagnostics_channel` TracingChannel `mpauthx:<method>`. */
  type TracedMethod =
    | 'ready'
    | 'authorize'
    | 'login'
    | 'refreshToken'
    | 'isTokenValid'
    | 'verifyToken'
    | 'revokeToken'
    | 'revokeUser'
    | 'getAccessToken'
    | 'getPhoneNumber'
    | 'decryptData'
    | 'checkSignature'
    | 'authenticate'

  /**
   * The context object of a traced call, given to every event of its TracingChannel and, as
   * `context`, to the events of `mpauthx:wechat`, `mpauthx:store` and `mpauthx:cache`. It
   * never carries a secret, a login code, a session key, user data, a user id or a token.
   */
  interface CallContext {
    method: TracedMethod
    /** The instance's sku; for a check that admits any sku, the live token's once found live. */
    sku: string
    /** The outcome's status code, set before `asyncStart` (or `end` for a synchronous answer). */
    code?: StatusCode
    /** The rejection, set before `error`. */
    error?: MpauthxError
  }

  /** How a WeChat request ended. */
  type WechatOutcome = 'ok' | 'errcode' | 'httpStatus' | 'timeout' | 'network' | 'badReply'

  /** Where a store round trip went. */
  type StoreBackend = 'redis' | 'sqlite' | 'userStore'

  /** What an instance talks to, as `health()` and `stats().connections` name it. */
  type ConnectionName = StoreBackend | 'wechat'

  /** Start and end in ms since the epoch (fractional), published when the call ends. */
  interface Timed {
    start: number
    end: number
    durationMs: number
  }

  /** `mpauthx:wechat`: one WeChat request of a call. */
  interface WechatEvent extends Timed {
    context: CallContext
    /** The path, such as `/sns/jscode2session`; never the query, which carries secrets. */
    endpoint: string
    outcome: WechatOutcome
    httpStatus: number | null
    errcode: number | null
  }

  /** `mpauthx:wechat` and `mpauthx:store`: a connection found up or down by a call. */
  interface ConnectionChange {
    context: CallContext
    /** On `mpauthx:store` only. */
    backend?: StoreBackend
    state: 'up' | 'down'
    /** Why it is down: `timeout`, `disconnected`, `unreachable`, `network`, `busy`, `failed`, … */
    error: string | null
  }

  /** `mpauthx:store`: one round trip to Redis, SQLite or the user store. */
  interface StoreEvent extends Timed {
    context: CallContext
    backend: StoreBackend
    /** The Redis command (`GET`, `EVALSHA`, `pipeline`), `statements`/`commit` for SQLite, the `userStore` method. */
    operation: string
    outcome: 'ok' | 'failed'
  }

  /** `mpauthx:cache`: how the validation cache answered a check, or that it was turned off. */
  type CacheEvent = { context: CallContext; outcome: 'hit' | 'miss' | 'invalidated' } | { context: CallContext; state: 'off' }

  /** Cumulative histogram: `counts[i]` requests took at most `le[i]` ms; `count` is all of them. */
  interface Histogram {
    le: number[]
    counts: number[]
    count: number
    sum: number
  }

  /** Calls of one method (counters). */
  interface MethodStats {
    calls: number
    /** Failed calls by status code. */
    failures: { [code: number]: number }
  }

  /** Round trips to one backend (counters). */
  interface StoreStats {
    roundTrips: number
    /** Operations run again after a dead connection. */
    retries: number
    failures: number
  }

  /** What `stats()` gives: counters only grow; `on` and `entries` are gauges. */
  interface Stats {
    /** Labels. */
    appId: string
    sku: string
    calls: Record<TracedMethod, MethodStats>
    wechat: { requests: Record<WechatOutcome, number>; latencyMs: Histogram }
    store: Record<StoreBackend, StoreStats>
    validationCache: ValidationCacheStats
    connections: { reconnects: number; lastFailure: ConnectionFailure | null }
    appToken: { fetches: number; lockWaits: number }
  }

  interface ValidationCacheStats {
    /** Gauge: the cache answers checks. */
    on: boolean
    /** Gauge: live tokens the native cache holds. */
    entries: number
    hits: number
    misses: number
    /** Keys Redis said changed. */
    invalidations: number
  }

  interface ConnectionFailure {
    connection: ConnectionName
    kind: string
    /** ms since the epoch. */
    at: number
  }

  /** A connection as last observed: `unknown` before its first use. */
  interface ConnectionHealth {
    state: 'unknown' | 'up' | 'down'
    /** When it became so, ms since the epoch. */
    since: number | null
    lastError: string | null
  }

  /** What `health()` gives: the connections this instance uses, and the validation cache when it has one. */
  interface Health {
    connections: Partial<Record<ConnectionName, ConnectionHealth>>
    validationCache: { on: boolean } | null
  }

  /** The SQLite database: a file path, a node-sqlite3 `Database` or a better-sqlite3 `Database`; `null` only with `options.userStore`. */
  type Database = string | { readonly filename: string } | { readonly name: string } | null

  /** A token: `<userId>|<sku>|<64 lowercase hex>`. */
  type Token = string

  /** What `verifyToken` resolves with. */
  interface TokenInfo {
    /** The user id of the token (openId, or unionId when WeChat gave one). */
    openId: string
    /** The sku of the token. */
    sku: string
    /** When the token was issued, in ms since the epoch. */
    ctime: number
    /** Seconds the token has left to live; `null` for a token without a TTL. */
    expiresIn: number | null
  }

  /** What `getAccessToken` resolves with. */
  interface AccessToken {
    /** The token for WeChat's server APIs. */
    accessToken: string
    /** Seconds it stays cached; it is refreshed about five minutes before WeChat expires it. */
    expiresIn: number
  }

  /** What `getPhoneNumber` resolves with. */
  interface PhoneNumber {
    /** With the country code, as WeChat formats it, for example `+86 13800138000`. */
    phoneNumber: string
    /** Without the country code. */
    purePhoneNumber: string
    /** The country code, for example `86`. */
    countryCode: string
  }

  /**
   * Who a request comes from: what `authenticate` resolves with, and what the integrations
   * put on the request (`req.mpauthx`, `ctx.state.mpauthx`, Fastify's `request.mpauthx`).
   */
  interface RequestAuth {
    /** The live token the request carried. */
    readonly token: Token
    /** The user id of the token (the openId, or the unionId when WeChat gave one). */
    readonly openId: string
    /** The sku of the token. */
    readonly sku: string
    /** Whole seconds the token has left, as Redis's `TTL` rounds them; `null` without a TTL. */
    readonly expiresIn: number | null
  }

  /**
   * Where the token of a request is read from; the first found wins. `Authorization: Bearer
   * <token>` comes first unless `bearer` is `false`, then the sources named here in the order
   * their keys are written. Without `tokenFrom`: Bearer, then the `x-access-token` header.
   */
  interface TokenFrom {
    /** Read `Authorization: Bearer <token>` first. Default `true`. */
    bearer?: boolean
    /** A request header, for example `'x-token'`. */
    header?: string
    /** A cookie: from `req.cookies` (cookie-parser, @fastify/cookie), else the `Cookie` header. */
    cookie?: string
    /** A query parameter: from the framework's parsed `query`, else the request URL. */
    query?: string
  }

  /** What `authenticate()` acts on; unknown keys reject with a `TypeError`. */
  interface AuthenticateOptions {
    /** Accept live tokens of every sku, not only the instance's own. Default `false`. */
    anySku?: boolean
    /** No token at all is no failure: `authenticate` resolves `null`, middleware goes on without `mpauthx`. A bad token still fails. Default `false`. */
    optional?: boolean
    /** Where the token is read from. */
    tokenFrom?: TokenFrom
  }

  /**
   * Which requests `match` or `ignore` name, with Egg's semantics (egg-path-matching): a
   * string is a path and everything under it (a path-to-regexp pattern, `end: false`), a
   * RegExp is tested on the path (without the query), a function gets the framework's request
   * (Express `req`, Koa `ctx`, Fastify `request`) and matches when it returns `true`, an array
   * matches when one of its items does.
   */
  type PathPattern = string | RegExp | ((request: any) => boolean) | readonly PathPattern[]

  /**
   * Options of `middleware()`, `fastifyPlugin()` and `authenticate()` (which answers no HTTP
   * and is an explicit check, so `failureBody`, `match` and `ignore` change nothing there);
   * unknown keys throw a `TypeError`.
   */
  interface MiddlewareOptions extends AuthenticateOptions {
    /**
     * The JSON body of a refusal (status and headers stay): for replies wrapped in your own
     * `{ code, msg, data }`. `err.code` is 6007, 6000 or, rarely, another code; `err.message`
     * is public wording, `err.detail` internal detail, not for clients. A function that throws
     * passes its error to the framework.
     */
    failureBody?: (err: MpauthxError) => unknown
    /**
     * The requests to check; the others go on without `mpauthx`. `[]` checks none (Fastify:
     * routes opt in with `mpauthxGuard`). Giving both `match` and `ignore` throws a `TypeError`.
     */
    match?: PathPattern
    /** The requests not to check, which go on without `mpauthx`: `'/login'`, `['/login', /^\/public\//]`. */
    ignore?: PathPattern
  }

  /**
   * Options of `koaMiddleware()`: also the other keys Egg and Midway pass to every middleware
   * factory, which the framework acts on and mpauthx leaves alone.
   */
  interface KoaMiddlewareOptions extends MiddlewareOptions {
    enable?: unknown
    core?: unknown
  }

  /** What a Fastify route's `config.mpauthx` says: `false`, no check; `{ optional: true }`, an optional check. */
  type FastifyRouteSetting = false | { optional?: boolean }

  /** Options of `isTokenValid()`; unknown keys reject with a `TypeError`. */
  interface IsTokenValidOptions {
    /** Reject a live token of another sku with 6007, as the middleware does. Default `false` (1.3.2's check). */
    ownSku?: boolean
  }

  /** Request headers: Node's lower-cased object, or a Fetch `Headers`. */
  type RequestHeaders = { [name: string]: string | string[] | undefined } | { get(name: string): string | null }

  /** What `authenticate` reads: any Node, Express, Koa, Fastify or NestJS request fits. */
  interface AuthenticateRequest {
    headers: RequestHeaders
    /** Read for `tokenFrom.query` when there is no parsed `query`. */
    url?: string
    /** Read for `tokenFrom.query`. */
    query?: unknown
    /** Read for `tokenFrom.cookie`. */
    cookies?: unknown
  }

  /** Options of `revokeUser()`; unknown keys throw. */
  interface RevokeUserOptions {
    /** Every sku's token of the user in the store, not only this instance's sku. Default `false`. */
    allSkus?: boolean
  }

  /** The part of a Node, Express or Connect request the middleware uses. */
  interface MiddlewareRequest extends AuthenticateRequest {
    /** Set by the middleware before it calls `next()`. */
    mpauthx?: RequestAuth
  }

  /** The part of a Node, Express or Connect response the middleware uses. */
  interface MiddlewareResponse {
    /** Set to the refusal's status (401, 503, …) when the request is refused. */
    statusCode: number
    /** When headers are already sent, a refusal goes to `next(err)` instead. */
    readonly headersSent: boolean
    /** Sets `Content-Type`, and `WWW-Authenticate` or `Retry-After`, on a refusal. */
    setHeader(name: string, value: string): unknown
    /** Sends the JSON body of a refusal. */
    end(chunk: string): unknown
  }

  /**
   * An Express/Connect middleware: on success sets `req.mpauthx` and calls `next()`; answers
   * 401 `{ status_code: 6007, status_message }` for a missing or dead token, 503 with 6000
   * when the store cannot answer, and the `status` of any other `MpauthxError`; passes any
   * other failure to `next(err)`. A request `match`/`ignore` leave out goes to `next()` unchecked.
   */
  type ConnectMiddleware = (req: MiddlewareRequest, res: MiddlewareResponse, next: (err?: unknown) => void) => void

  /** The part of a Koa context the middleware uses. */
  interface KoaMiddlewareContext extends AuthenticateRequest {
    /** `state.mpauthx` is set before `next()` is awaited. */
    state: { mpauthx?: RequestAuth }
    /** Set to the refusal's status (401, 503, …) when the request is refused. */
    status: number
    /** The JSON body of a refusal. */
    body: unknown
    /** Set to JSON on a refusal. */
    type: string
    /** Sets `WWW-Authenticate` or `Retry-After` on a refusal. */
    set(fields: { [name: string]: string }): void
  }

  /** Koa state after the middleware: `new Koa<mpauthx.KoaState>()` types `ctx.state.mpauthx`. */
  interface KoaState {
    /** Who the request comes from. */
    mpauthx: RequestAuth
  }

  /**
   * A Koa middleware: on success sets `ctx.state.mpauthx` and awaits `next()`; answers like
   * `ConnectMiddleware` otherwise, and rethrows any other failure.
   */
  type KoaMiddleware = (ctx: KoaMiddlewareContext, next: () => Promise<unknown>) => Promise<void>

  /**
   * A Fastify plugin (`await app.register(auth.fastifyPlugin())`): an `onRequest` check on the
   * routes of the instance it is registered on and its children, those added later included
   * (not encapsulated, as fastify-plugin makes plugins), but those `match`/`ignore` leave out
   * and those whose `config.mpauthx` is `false`. Sets `request.mpauthx`; answers like
   * `ConnectMiddleware` through Fastify's reply. Decorates the instance with `mpauthxGuard`;
   * a second registration in the same instance rejects (two skus need two contexts).
   */
  interface FastifyPlugin {
    // Structural, so that these typings need no `fastify` package: `register` accepts it.
    (instance: any, options: Record<string, unknown>, done: (err?: Error) => void): void
  }

  /** An instance from the factory: independent of other instances, with its own connections. */
  interface Mpauthx {
    /**
     * Logs a mini-program user in with the `code` of `wx.login` and the `encryptedData` and
     * `iv` of `wx.getUserInfo`: resolves with the user's live token for this sku, or a new one
     * (registering the user in the `user` table first). Rejects with 6001, 6008, 6009, 6011
     * or 6000.
     */
    authorize(code: string, encryptedData: string, iv: string): Promise<Success<Token>>
    /**
     * Logs a user in with the `code` of `wx.login` alone (no `getUserInfo`): the user id is the
     * `unionid` of WeChat's reply when it has one, else the `openid`. Same session rules as
     * `authorize`. Rejects with 6001, 6008 or 6000.
     */
    login(code: string): Promise<Success<Token>>
    /**
     * Replaces the user's token for this sku with a new one; the user must be registered, in
     * this server's `user` table or on any server sharing the Redis (else 6010). The old token
     * stops being valid.
     */
    refreshToken(userId: string): Promise<Success<Token>>
    /**
     * Checks the configuration without calling WeChat: Redis answers (or the SQLite token
     * file opens), the SQLite `user` table can be used, or the user store's `ready()` passes
     * (the shipped adapters read zero rows of their table). Resolves `true`, or rejects 6000
     * whose `detail` names what failed; can be called at any time (a readiness probe). The
     * same check runs before an instance's first login, so a misconfigured store fails that
     * login before its code is spent.
     */
    ready(): Promise<true>
    /**
     * Logs a token out: `response` is `true` when a live token was deleted, `false` when there
     * was none. The user's next login issues a fresh token. Rejects with 6001 or 6000.
     */
    revokeToken(token: Token): Promise<Success<boolean>>
    /**
     * Logs a user out: deletes every live token the user holds in this sku or, with
     * `allSkus`, in every sku in this Redis (or SQLite file), 1.3.2's included; `response` is
     * how many tokens were deleted. In Redis this costs a `SCAN` of the keyspace (bounded by
     * `revokeUserScanMs`): for logout-everywhere and bans, not per request. Rejects with 6001
     * for a missing or malformed user id (empty, containing `|`), 6000; throws `TypeError`
     * for bad options.
     */
    revokeUser(userId: string, options?: RevokeUserOptions): Promise<Success<number>>
    /** What a live token stands for; rejects with 6007 when it is not live, 6000 when the store cannot answer. */
    verifyToken(token: Token): Promise<Success<TokenInfo>>
    /**
     * Decrypts any encrypted payload of the user's session (WeRun data, shared group info, the
     * old phone flow) with the session key kept for the token, checking its watermark. Rejects
     * with 6007 when the token is not live (or has no session key), 6011 for a bad payload.
     */
    decryptData(token: Token, encryptedData: string, iv: string): Promise<Success<Record<string, unknown>>>
    /**
     * Whether `signature` is `sha1(rawData + session_key)` for the token's session, compared in
     * constant time. Rejects with 6007 when the token is not live, 6001 for a missing argument.
     */
    checkSignature(token: Token, rawData: string, signature: string): Promise<Success<boolean>>
    /**
     * The app's access token (stable token endpoint), cached in the token store and shared by
     * every instance and process using it; refreshed ahead of expiry by one caller at a time.
     * Rejects with 6008 when WeChat refuses, 6000 when the store cannot answer.
     */
    getAccessToken(): Promise<Success<AccessToken>>
    /**
     * The phone number behind a `getPhoneNumber` button code. An access token that WeChat
     * refuses (40001, 42001) is replaced once; other errcodes reject with 6008 naming them.
     */
    getPhoneNumber(code: string): Promise<Success<PhoneNumber>>
    /**
     * Resolves when the token is live; rejects with 6007 when it is not (with `ownSku`, also
     * when it is another sku's), 6000 when the store cannot answer. Without options, exactly
     * 1.3.2's check, which admits every sku.
     */
    isTokenValid(token: Token, options?: IsTokenValidOptions): Promise<void>
    /**
     * The one check every integration is built on: reads the request's token (see
     * `TokenFrom`), admits only this instance's sku unless `anySku`, and resolves with who the
     * request comes from; `null` with `optional` when no token was sent. Rejects with 6007
     * (missing, unknown, expired, replaced, other sku) or 6000 (the store cannot answer), and
     * with a `TypeError` for a request that is not an object or bad options.
     */
    authenticate(request: AuthenticateRequest | RequestHeaders, options?: MiddlewareOptions): Promise<RequestAuth | null>
    /** The user id (openId or unionId) of a token: the part before the first `|`, or `''`. */
    extractOpenId(token: Token): string
    /** The sku of a token of exactly three `|`-separated parts, else `null`. */
    extractSku(token: Token): string | null
    /** Express/Connect middleware that admits requests with a live token of this sku. */
    middleware(options?: MiddlewareOptions): ConnectMiddleware
    /** Koa (Egg, Midway) middleware that admits requests with a live token of this sku. */
    koaMiddleware(options?: KoaMiddlewareOptions): KoaMiddleware
    /** A Fastify plugin that admits requests with a live token of this sku. */
    fastifyPlugin(options?: MiddlewareOptions): FastifyPlugin
    /**
     * A synchronous snapshot of the instance's numbers, without I/O: cheap enough for every
     * scrape (docs/operating.md lists each field as a counter or a gauge).
     */
    stats(): Stats
    /**
     * Each connection as last observed and whether the validation cache is on, without I/O.
     * No single verdict: use it (and `ready()`) for readiness, not liveness.
     */
    health(): Health
    /** Closes the Redis connection and the SQLite file; later calls reject with 6000. */
    close(): Promise<void>
    /** The status codes, as on the module. */
    readonly constants: Constants
  }
}

declare global {
  namespace Express {
    interface Request {
      /** Set by mpauthx's `middleware()` for requests with a live token. */
      mpauthx?: mpauthx.RequestAuth
    }
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by mpauthx's `fastifyPlugin()`: who the request comes from; `null` when optional and no token was sent. */
    mpauthx: mpauthx.RequestAuth | null
  }
  interface FastifyInstance {
    /**
     * Decorated by mpauthx's `fastifyPlugin()`: an `onRequest` (or `preHandler`) hook that
     * checks the request whatever `match`/`ignore` say (`onRequest: [app.mpauthxGuard]`), for
     * routes guarded one by one; a request the plugin already admitted is not checked twice.
     */
    mpauthxGuard: (request: FastifyRequest, reply: any, done: (err?: Error) => void) => void
  }
  interface FastifyContextConfig {
    /** mpauthx's `fastifyPlugin()` on this route: `false`, no check; `{ optional: true }`, an optional check. */
    mpauthx?: mpauthx.FastifyRouteSetting
  }
}

declare const mpauthx: mpauthx.Module
export = mpauthx
