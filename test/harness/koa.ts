import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import { setTimeout as delay } from 'node:timers/promises'
import { keepAlive } from '@keepalive/koa'
import type { Context } from 'koa'
import { delayOf, listenerHarness, type Harness } from './harness.js'

type KoaClass = typeof import('koa')
// The majors are installed under aliases; both are typed by the installed `@types/koa`, which
// covers everything used here.
const require = createRequire(import.meta.url)
const Koa2 = require('koa2') as KoaClass
const Koa3 = require('koa3') as KoaClass

/** The route contract of harness.ts, written the usual Koa way (no router: one dispatching middleware). */
async function routes(ctx: Context): Promise<void> {
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return // Koa's own 404
  switch (ctx.path) {
    case '/':
      ctx.body = 'ok'
      return
    case '/stream':
      ctx.type = 'text/plain'
      ctx.body = Readable.from(['hello ', 'world'])
      return
    case '/app-keepalive':
      ctx.set('Keep-Alive', 'timeout=30')
      ctx.body = 'ok'
      return
    case '/app-close':
      ctx.set('Connection', 'close')
      ctx.body = 'ok'
      return
    case '/slow':
      await delay(delayOf(ctx.url))
      ctx.body = 'ok'
      return
    case '/throw':
      throw new Error('boom')
  }
}

function koaHarness(name: string, Koa: KoaClass): Harness {
  return listenerHarness(name, (options) => {
    const controller = keepAlive(options)
    const app = new Koa()
    app.silent = true // the 500 for /throw is expected: no stack on stderr
    app.use(controller)
    app.use(routes)
    return { controller, app }
  })
}

export const koa2Harness = koaHarness('koa2', Koa2)
export const koa3Harness = koaHarness('koa3', Koa3)
