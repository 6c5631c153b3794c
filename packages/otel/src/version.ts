// The package's own name and version, which name its meter (a test keeps them equal to package.json).

/** The instrumentation scope name: the package's npm name. */
export const SCOPE_NAME = '@keepalive/otel'
/** The instrumentation scope version: the package's version. */
export const SCOPE_VERSION = '0.1.0'
