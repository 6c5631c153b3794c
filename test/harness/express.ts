import { createRequire } from 'node:module'
import { setTimeout as delay } from 'node:timers/promises'
import { keepAlive } from '@keepalive/express'
import type { Express } from 'express'
import { delayOf, listenerHarness, type Harness } from './harness.js'

type ExpressFactory = typeof import('express')
// The majors are installed under aliases; both are typed by the installed `@types/express`, which
// covers everything used here.
const require = createRequire(import.meta.url)
const express4 = require('express4') as ExpressFactory
const express5 = require('express5') as ExpressFactory

/** The route contract of harness.ts, written the usual Express way. */
function routes(app: Express): void {
  app.get('/', (_req, res) => {
    res.send('ok')
  })
  app.get('/stream', (_req, res) => {
    res.type('text/plain')
    res.write('hello ')
    setImmediate(() => res.end('world'))
  })
  app.get('/app-keepalive', (_req, res) => {
    res.set('Keep-Alive', 'timeout=30').send('ok')
  })
  app.get('/app-close', (_req, res) => {
    res.set('Connection', 'close').send('ok')
  })
  app.get('/slow', (req, res, next) => {
    delay(delayOf(req.url)).then(() => res.send('ok'), next)
  })
  app.get('/throw', () => {
    throw new Error('boom')
  })
}

function expressHarness(name: string, express: ExpressFactory): Harness {
  return listenerHarness(name, (options) => {
    const controller = keepAlive(options)
    const app = express()
    app.set('env', 'test') // the default error handler then answers 500 without logging the stack
    app.use(controller)
    routes(app)
    return { controller, app }
  })
}

export const express4Harness = expressHarness('express4', express4)
export const express5Harness = expressHarness('express5', express5)
