// Both route modules in one, for serve-routes.mjs.
export * as slip from './app/api/slip/route'
export * as announce from './app/api/announce/route'
