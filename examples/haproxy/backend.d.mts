import type { Server } from 'node:http'
import type { KeepAliveController, KeepAliveOptions } from '@keepalive/core'

export declare const options: KeepAliveOptions
export declare function createBackend(keepAliveOptions?: KeepAliveOptions): { ka: KeepAliveController; server: Server }
