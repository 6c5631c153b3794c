import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { IncomingMessage } from 'node:http'
import type { CloseEvent, CloseReason, KeepAliveController } from '@keepalive/core'

/** Resolves with the controller's next `close` event of the given reason. Subscribe before acting. */
export function nextClose(controller: KeepAliveController, reason?: CloseReason): Promise<CloseEvent> {
  return new Promise((resolve) => {
    const onClose = (event: CloseEvent): void => {
      if (reason !== undefined && event.reason !== reason) return
      controller.off('close', onClose)
      resolve(event)
    }
    controller.on('close', onClose)
  })
}

/** Resolves once the controller's published load is at least `min` (at once if it already is). */
export function loadReached(controller: KeepAliveController, min: number): Promise<number> {
  return new Promise((resolve) => {
    const now = controller.stats().load
    if (now >= min) {
      resolve(now)
      return
    }
    const onLoad = (load: number): void => {
      if (load < min) return
      controller.off('load', onLoad)
      resolve(load)
    }
    controller.on('load', onLoad)
  })
}

/**
 * Resolves when `server` starts handling a request (Node's `http.server.request.start` channel),
 * before any application code runs for it. Subscribe before sending.
 */
export function nextRequestStart(server: unknown): Promise<IncomingMessage> {
  return new Promise((resolve) => {
    const onStart = (message: unknown): void => {
      const { server: from, request } = message as { server: unknown; request: IncomingMessage }
      if (from !== server) return
      unsubscribe('http.server.request.start', onStart)
      resolve(request)
    }
    subscribe('http.server.request.start', onStart)
  })
}
