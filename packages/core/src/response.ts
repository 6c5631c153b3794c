// Node's HTTP internals, in one file: the writeHead hook, the decision applied to Node's response
// fields, and what a socket's parser says (docs/architecture.md §5).
import { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { absorbHeaders, namesConnectionHeaders, saysClose, type HeaderInput } from './header.js'

type WriteHead = (this: ServerResponse, statusCode: number, reason?: string | HeaderInput, headers?: HeaderInput) => ServerResponse

/** What the writeHead hook finds on the socket: the owner of the connection's policy. */
export interface HeadersListener {
  /**
   * Called once per response, just before its headers are written. `inStore` is true when the
   * application handles `Connection` or `Keep-Alive` itself: every header is then in the
   * response's header store and the decision must read and write them there.
   */
  beforeHeaders(res: object, statusCode: number, inStore: boolean): void
  /** True if `res` answers a request this listener saw start: the only responses it decides. */
  answers(res: object): boolean
  /**
   * A response to a request no listener was handed (Node answers an unknown `Expect` with 417
   * itself): true if the listener takes it as a request started now, and decides it.
   */
  unannounced(res: object): boolean
}

/**
 * The fields of `OutgoingMessage` that `_storeHeader` (lib/_http_outgoing.js) reads to write the
 * connection headers itself: with no `Connection` header set it writes `Connection: keep-alive`
 * and `Keep-Alive: timeout=<floor(_keepAliveTimeout / 1000)>` (`, max=<_maxRequestsPerSocket>` when
 * above 0) if `shouldKeepAlive` holds and the body's end is known, else `Connection: close`; it
 * sets `_last` when it will end the socket after the response.
 */
interface NodeResponseFields {
  shouldKeepAlive: boolean
  _removedContLen: boolean
  _removedTE: boolean
  _keepAliveTimeout: number
  _maxRequestsPerSocket: number
  _removedConnection: boolean
  _last: boolean
  useChunkedEncodingByDefault: boolean
  req: IncomingMessage
  /** The header block once written (what `headersSent` tests), else null. */
  _header: string | null
  socket: Socket | null
  /** Set as `end()` is called. */
  finished: boolean
}

/** Where a tracked socket keeps its per-connection state. */
export const kConnection = Symbol('keepalive.connection')

interface ListenedSocket {
  [kConnection]?: HeadersListener
  // Node sets `parser` on sockets it parses HTTP/1 on and clears it when the socket is upgraded.
  parser?: { incoming?: { upgrade?: unknown } | null } | null
  _httpMessage?: { finished?: boolean } | null
}

/**
 * The Node majors whose response internals the matrix pins on every run (test/node-versions.test.ts
 * runs `checkNodeFields()` and reads the header store on each): on these nothing is probed at load.
 * A probe builds Node response objects before the server's first request, and the property-access
 * caches V8 keeps per site in Node's own HTTP code then count them beside the server's: several sites
 * become megamorphic for good, which cost the server a few hundred instructions per request.
 */
export const PINNED_MAJORS = { min: 20, max: 26 } as const
const nodeMajor = Number(process.versions.node.split('.')[0])
const pinnedNode = nodeMajor >= PINNED_MAJORS.min && nodeMajor <= PINNED_MAJORS.max

/**
 * Whether this Node writes the connection headers from the fields above, as 20 to 26 do: taken as
 * pinned on those, checked at load on any other. If a Node changes them, every decision goes through
 * `setHeader` instead: slower, still correct. `KEEPALIVE_NODE_FIELDS=0` forces that path (the tests
 * run the conformance suite through it).
 */
export const nodeFields: boolean = process.env.KEEPALIVE_NODE_FIELDS !== '0' && (pinnedNode || checkNodeFields())

/**
 * Writes two responses of a socketless request and checks that Node wrote the connection headers
 * from the fields: what `nodeFields` assumes. Run at load only on a Node outside the pinned majors.
 */
export function checkNodeFields(): boolean {
  try {
    const req = new IncomingMessage(null as unknown as Socket)
    req.method = 'GET'
    const keep = new ServerResponse(req) as ServerResponse & NodeResponseFields
    if (typeof keep.shouldKeepAlive !== 'boolean' || typeof keep._last !== 'boolean' || typeof keep._removedConnection !== 'boolean') return false
    keep.shouldKeepAlive = true
    keep._keepAliveTimeout = 7000
    keep._maxRequestsPerSocket = 3
    keep.setHeader('Content-Length', '0')
    keep.writeHead(200)
    const close = new ServerResponse(req) as ServerResponse & NodeResponseFields
    close.shouldKeepAlive = false
    close.setHeader('Content-Length', '0')
    close.writeHead(200)
    const head = (res: ServerResponse): string => String((res as unknown as { _header: unknown })._header).toLowerCase()
    return (
      head(keep).includes('\r\nconnection: keep-alive\r\nkeep-alive: timeout=7, max=3\r\n') &&
      !keep._last &&
      head(close).includes('\r\nconnection: close\r\n') &&
      close._last
    )
  } catch {
    return false // anything unexpected: use the header store, which any Node supports
  }
}

// ---- reading what Node did and does ------------------------------------------------------

/** True if Node ends the socket after this (finished) response. */
export function lastResponse(res: object): boolean {
  if (nodeFields) return (res as NodeResponseFields)._last
  return saysClose((res as ServerResponse).getHeader('connection')) || !(res as NodeResponseFields).shouldKeepAlive
}

/** The idle timeout Node itself advertised on a response (its server's keepAliveTimeout when the response began). */
export function advertisedTimeoutMs(res: object): number {
  const ms = (res as NodeResponseFields)._keepAliveTimeout
  return typeof ms === 'number' && ms > 0 ? ms : 5000
}

/**
 * True if Node no longer speaks HTTP/1 on this socket (upgraded, CONNECT): Node frees the socket's
 * parser then. Node sets `parser` in its own connection listener: before that (or on a Node that no
 * longer exposes it), the socket is taken as still HTTP/1.
 */
export function isDetached(socket: object): boolean {
  if (!('parser' in socket)) return false
  const parser = (socket as ListenedSocket).parser
  // Node 26 keeps the parser while an upgrade request's body is still arriving (an UpgradeStream):
  // the request it handed over as an upgrade marks the socket as no longer ours.
  return parser == null || parser.incoming?.upgrade === true
}

/**
 * True if `res` answers the request the socket's parser read last, as Node's own answers do: it
 * writes a 417 for an unknown `Expect`, or a 400 for a missing `Host`, while it parses the request,
 * before the next one is read. A response to a request read before tracking began answers an
 * earlier one. False where the socket has no parser to ask.
 */
export function answersParsedRequest(res: object, socket: object): boolean {
  const parser = (socket as ListenedSocket).parser
  const req = (res as { req?: unknown }).req
  return parser != null && req !== undefined && parser.incoming === req
}

/** What a socket's first request message beginning calls (the parser's kOnMessageBegin slot, 0 on Node 20 to 26). */
export interface FirstMessageListener {
  messageBegan(): void
}

const ON_MESSAGE_BEGIN = 0

interface HookableParser {
  [ON_MESSAGE_BEGIN]?: unknown
  socket?: { [kConnection]?: unknown } | null
}

// Shared by every parser: llhttp calls it as a request line's first byte arrives (not for the empty
// lines it skips). It chains to what was there, then puts that back: only a first message pays.
function onFirstMessageBegin(this: HookableParser): void {
  const previous = firstMessageHooks.get(this)
  firstMessageHooks.delete(this)
  this[ON_MESSAGE_BEGIN] = previous ?? null
  ;(this.socket?.[kConnection] as FirstMessageListener | undefined)?.messageBegan?.()
  if (typeof previous === 'function') (previous as () => void).call(this)
}

const firstMessageHooks = new WeakMap<object, unknown>()

/**
 * Asks to be told when the first request message begins on a fresh socket, so empty lines sent
 * before it can be told from a request on its way. False where the socket has no parser to ask.
 */
export function watchFirstMessage(socket: object): boolean {
  const parser = (socket as { parser?: HookableParser | null }).parser
  if (parser == null || typeof parser !== 'object' || !(ON_MESSAGE_BEGIN in parser)) return false
  if (parser[ON_MESSAGE_BEGIN] === onFirstMessageBegin) return true
  firstMessageHooks.set(parser, parser[ON_MESSAGE_BEGIN])
  parser[ON_MESSAGE_BEGIN] = onFirstMessageBegin
  return true
}

/** True if Node has a response on this socket that has not finished (lib/_http_server.js closeIdleConnections). */
export function responsePending(socket: object): boolean {
  const message = (socket as ListenedSocket)._httpMessage
  return message != null && message.finished !== true
}

interface ConnectionsList {
  active(): readonly { socket?: unknown }[]
}

const connectionsSymbols = new WeakMap<object, symbol | null>()

/**
 * The sockets on which a request message has begun and not yet been received whole, from Node's
 * own connection list (what its headersTimeout and requestTimeout guard), or null where this
 * Node keeps none. Empty lines before a request line do not begin one (RFC 9112 §2.2).
 */
export function requestsBegun(server: object): Set<unknown> | null {
  let symbol = connectionsSymbols.get(server)
  if (symbol === undefined) {
    symbol = Object.getOwnPropertySymbols(server).find((s) => s.description === 'http.server.connections') ?? null
    // Node creates the list when the server starts listening: look again next time until then.
    if (symbol !== null) connectionsSymbols.set(server, symbol)
  }
  if (symbol === null) return null
  const list = (server as Record<symbol, ConnectionsList | undefined>)[symbol]
  if (list === undefined || typeof list.active !== 'function') return null
  const sockets = new Set<unknown>()
  for (const parser of list.active()) sockets.add(parser.socket)
  return sockets
}

// ---- the writeHead hook --------------------------------------------------------------------

/**
 * Node's header store on a response (`kOutHeaders` in lib/_http_outgoing.js: null, or an object of
 * `[name, value]` pairs keyed by lower-case name). On a pinned Node it is found on the first response
 * the hook reads (undefined until then); on any other it is checked at load. Null where this Node has
 * none, or one shaped otherwise: `hasHeader()` answers then.
 */
let kOutHeaders: symbol | null | undefined = pinnedNode ? undefined : checkHeaderStore()

/** The own symbol of a response whose description is `kOutHeaders` and whose value is null or an object, else null. */
export function headerStoreOf(res: object): symbol | null {
  const symbol = Object.getOwnPropertySymbols(res).find((s) => s.description === 'kOutHeaders')
  if (symbol === undefined) return null
  const store = (res as Record<symbol, unknown>)[symbol]
  return typeof store === 'object' ? symbol : null
}

/** Sets headers on a response of a socketless request and checks how the store keeps them: what `kOutHeaders` assumes. */
export function checkHeaderStore(): symbol | null {
  try {
    const res = new ServerResponse(new IncomingMessage(null as unknown as Socket))
    const symbol = headerStoreOf(res)
    if (symbol === null) return null
    const store = (): Record<string, unknown> | null | undefined => (res as unknown as Record<symbol, Record<string, unknown> | null | undefined>)[symbol]
    if (store() !== null) return null
    res.setHeader('Connection', 'close')
    if (store()?.connection === undefined || store()?.['keep-alive'] !== undefined) return null
    res.setHeader('Keep-Alive', 'timeout=1')
    return store()?.['keep-alive'] !== undefined ? symbol : null
  } catch {
    return null
  }
}

/** True if the application has set a `Connection` or `Keep-Alive` header on this response. */
function hasConnectionHeaders(res: ServerResponse): boolean {
  if (kOutHeaders === undefined) kOutHeaders = headerStoreOf(res)
  if (kOutHeaders === null) return res.hasHeader('connection') || res.hasHeader('keep-alive')
  const store = (res as unknown as Record<symbol, Record<string, unknown> | null>)[kOutHeaders]
  return store != null && (store.connection !== undefined || store['keep-alive'] !== undefined)
}

/**
 * The response whose request started last and the listener it was hooked for, until its hook runs
 * or it ends. Most handlers answer within the turn their request started in, so the hook finds its
 * connection without reading the response: Express swaps each response's prototype, which gives
 * every response object a map of its own, so each read of a response's property is a slow lookup
 * there (docs/architecture.md §9). This path reads as few as it can.
 */
let hooked: object | null = null
let hookedListener: HeadersListener | null = null

const responsePrototype = ServerResponse.prototype as ServerResponse & { writeHeader?: unknown }
/** Node 20 to 24 keep the deprecated alias writeHeader (DEP0063), which would bypass the hook. */
const hasWriteHeader = typeof responsePrototype.writeHeader === 'function'
/** What `ServerResponse.prototype.writeHead` was when the hook went in: the next in the chain. */
let nextWriteHead: WriteHead = responsePrototype.writeHead as WriteHead
let nextWriteHeader: unknown = responsePrototype.writeHeader
/** Controllers attached: the hook is in place while there is one. */
let installs = 0
/** True while the hook is in the chain (also after removal failed, see `removeResponseHooks`). */
let inChain = false

/**
 * One hook for every response, on `ServerResponse.prototype` (docs/architecture.md §5): Node writes
 * a head through `this.writeHead()` whether the application calls it or not (`_implicitHeader` on
 * the first `write()`/`end()`), and a wrapper a response gets later (on-headers: compression,
 * sessions; a subclass's override calling `super`) still ends here. Nothing is written on the
 * response itself, so its hidden class stays the one Node's own code expects. A response whose
 * request keepalive did not see start passes through untouched.
 */
function keepAliveWriteHead(this: ServerResponse, statusCode: number, reason?: string | HeaderInput, headers?: HeaderInput): ServerResponse {
  return hookedWriteHead(this, statusCode, reason, headers)
}

function hookedWriteHead(res: ServerResponse, statusCode: number, reason?: string | HeaderInput, headers?: HeaderInput): ServerResponse {
  const fields = res as unknown as NodeResponseFields
  let listener: HeadersListener | undefined
  if (res === hooked) {
    // Its first writeHead(): nothing was written yet. A second call (which Node refuses) or one
    // after a call that threw goes the way below, which looks at the response.
    listener = hookedListener as HeadersListener
    hooked = null
    hookedListener = null
  } else {
    // A pipelined response is given its socket only once those before it are done.
    const socket = (fields.socket ?? (fields.req as IncomingMessage | undefined)?.socket) as ListenedSocket | null | undefined
    listener = socket?.[kConnection]
    if (listener === undefined || (nodeFields ? fields._header !== null : res.headersSent) || (!listener.answers(res) && !listener.unannounced(res))) {
      return nextWriteHead.call(res, statusCode, reason as string, headers)
    }
  }
  // An upgrade answered from a request handler: its Connection is the upgrade's (§4 rule 2).
  if (statusCode === 101) return nextWriteHead.call(res, statusCode, reason as string, headers)
  // Node's own reading of the arguments (lib/_http_server.js writeHead): a string is the reason
  // phrase; otherwise the headers are the third argument, or the second.
  const message = typeof reason === 'string' ? reason : undefined
  const given = message === undefined ? (headers ?? (reason as HeaderInput | undefined)) : headers
  // The common case: the application leaves the connection headers to us, Node writes them from
  // the fields the decision sets, and the headers given here pass through untouched.
  const named = given != null && namesConnectionHeaders(given)
  if (nodeFields && !named && !hasConnectionHeaders(res) && !fields._removedConnection && !(fields._removedContLen && fields._removedTE)) {
    listener.beforeHeaders(res, statusCode, false)
    return nextWriteHead.call(res, statusCode, reason as string, headers)
  }
  if (given != null && !absorbHeaders(res, given)) return nextWriteHead.call(res, statusCode, reason as string, headers)
  listener.beforeHeaders(res, statusCode, true)
  return message === undefined ? nextWriteHead.call(res, statusCode) : nextWriteHead.call(res, statusCode, message)
}

// ---- the end of a response -------------------------------------------------------------------

/** What the finish hook calls: a finished response has just been detached from its socket. */
export type ResponseFinished = (res: ServerResponse, socket: Socket) => void

type DetachSocket = (this: ServerResponse, socket: Socket) => void

const ignoreFinished: ResponseFinished = () => {}
let onFinished: ResponseFinished = ignoreFinished
let nextDetachSocket: DetachSocket = responsePrototype.detachSocket as DetachSocket
let finishInChain = false

/**
 * Node detaches every HTTP/1 response from its socket as the response finishes (resOnFinish in
 * lib/_http_server.js, 20 to 26), before it ends the socket (`_last`) or hands it to the next
 * pipelined response: the one moment every response passes, in order, on its socket. Node also
 * detaches an unfinished response when it hands the socket to another process; that one served
 * nothing and is not reported.
 */
function keepAliveDetachSocket(this: ServerResponse, socket: Socket): void {
  nextDetachSocket.call(this, socket)
  if ((this as unknown as NodeResponseFields).finished) onFinished(this, socket)
}

// ---- installing the hooks --------------------------------------------------------------------

/**
 * Puts the hooks on `ServerResponse.prototype` (once for all controllers; each attached one calls
 * this once, with the same `finished`). Whatever was there stays next in the chain.
 */
export function installResponseHooks(finished: ResponseFinished): void {
  onFinished = finished
  if (installs++ > 0) return
  if (!inChain) {
    nextWriteHead = responsePrototype.writeHead as WriteHead
    nextWriteHeader = responsePrototype.writeHeader
    responsePrototype.writeHead = keepAliveWriteHead as ServerResponse['writeHead']
    if (hasWriteHeader) responsePrototype.writeHeader = keepAliveWriteHead
    inChain = true
  }
  if (!finishInChain) {
    nextDetachSocket = responsePrototype.detachSocket as DetachSocket
    responsePrototype.detachSocket = keepAliveDetachSocket
    finishInChain = true
  }
}

/**
 * The last attached controller stopped: the prototype gets back what it had. If something wrapped
 * a hook since, it stays in that chain, passing every response through, and is reused by the next
 * controller instead of being put in twice.
 */
export function removeResponseHooks(): void {
  if (installs === 0 || --installs > 0) return
  hooked = null
  hookedListener = null
  onFinished = ignoreFinished
  if (responsePrototype.detachSocket === keepAliveDetachSocket) {
    responsePrototype.detachSocket = nextDetachSocket
    finishInChain = false
  }
  if (responsePrototype.writeHead !== (keepAliveWriteHead as unknown)) return
  responsePrototype.writeHead = nextWriteHead as ServerResponse['writeHead']
  if (hasWriteHeader && responsePrototype.writeHeader === keepAliveWriteHead) responsePrototype.writeHeader = nextWriteHeader
  inChain = false
}

/**
 * Makes `listener` run just before this response's headers are written, whether the application
 * calls `writeHead()` or Node writes them implicitly on the first `write()`/`end()` (the hook must
 * be installed). Two writes of module state: nothing on the response.
 */
export function hookHeaders(res: ServerResponse, listener: HeadersListener): void {
  hooked = res
  hookedListener = listener
}

/**
 * The listener a response was hooked for, if it is the response whose request started last and its
 * hook has not run yet; else null. The middleware adapters' `handle()` finds such a response
 * already handled without reading it.
 */
export function hookedListenerOf(res: object): HeadersListener | null {
  return res === hooked ? hookedListener : null
}

/** A response ended: it is not held for its hook any longer. */
export function forgetHooked(res: object): void {
  if (hooked === res) {
    hooked = null
    hookedListener = null
  }
}

/**
 * Lets go of the held response if `gone(listener)` says its listener is gone: its connection was
 * released (a response that never went out, its client gone), or its controller stopped.
 */
export function forgetHookedIf(gone: (listener: HeadersListener) => boolean): void {
  if (hookedListener !== null && gone(hookedListener)) {
    hooked = null
    hookedListener = null
  }
}

// ---- the decision applied ------------------------------------------------------------------

/** True if this response's message has a body (RFC 9112 §6.3: not HEAD, 1xx, 204 or 304). */
function hasBody(req: IncomingMessage, statusCode: number): boolean {
  return req.method !== 'HEAD' && statusCode !== 204 && statusCode !== 304 && !(statusCode >= 100 && statusCode < 200)
}

/**
 * Predicts whether Node will keep the connection open after this response, given the headers set
 * so far (mirrors `_storeHeader` in lib/_http_outgoing.js): the client asked to keep it, no
 * `Connection` value closes it, and the body's end is known without closing the connection.
 */
export function nodeKeepsAlive(res: ServerResponse, statusCode: number): boolean {
  const fields = res as unknown as NodeResponseFields
  if (!fields.shouldKeepAlive) return false
  const connection = res.getHeader('connection')
  if (saysClose(connection)) return false
  const hasLength = res.hasHeader('content-length')
  const chunkedByDefault = fields.useChunkedEncodingByDefault
  // Both framing headers removed by the application: only the close can end a body (Node sets _last).
  if (fields._removedContLen && fields._removedTE && !hasLength && hasBody(fields.req, statusCode)) return false
  const noLength = !hasLength && !chunkedByDefault
  // Transfer-Encoding only matters when the length is unknown or on a 204/304: skip the lookup otherwise.
  if (!noLength && statusCode !== 204 && statusCode !== 304) return true
  const te = res.getHeader('transfer-encoding')
  if (noLength && te === undefined && hasBody(fields.req, statusCode)) return false
  // Node closes 204/304 responses that were given `Transfer-Encoding: chunked`.
  if (te !== undefined && (statusCode === 204 || statusCode === 304) && /chunked/i.test(String(te))) return false
  return true
}

/** Writes "close after this response" (fields path). */
export function closeByFields(res: object): void {
  ;(res as NodeResponseFields).shouldKeepAlive = false
}

/** Writes "keep alive for `timeoutMs`, `remaining` more requests" (fields path; 0 = no `max=`). */
export function keepByFields(res: object, timeoutMs: number, remaining: number): void {
  const fields = res as NodeResponseFields
  fields._keepAliveTimeout = timeoutMs
  fields._maxRequestsPerSocket = remaining
}
