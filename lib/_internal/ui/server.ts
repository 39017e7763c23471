/**
 * The UI's HTTP routes on Effect's HTTP server (`effect/http` with the Node server layer from
 * `@effect/platform-node`, which runs on Deno and Bun): the page and its static files (uPlot
 * read from its npm package), the JSON API and the Prometheus text endpoint.
 * @internal
 */
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import { Clock, Effect, FileSystem } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import type { Collector } from "./collector.ts"

/** The static files the page needs, read once at start. @internal */
export interface Assets {
  readonly html: string
  readonly appJs: string
  readonly appCss: string
  readonly uplotJs: string
  readonly uplotCss: string
}

const own = (name: string): string => fileURLToPath(new URL(`./assets/${name}`, import.meta.url))

/** Reads the page's files and uPlot's (from the installed `uplot` package). @internal */
export const loadAssets: Effect.Effect<Assets, Error, FileSystem.FileSystem> = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const resolve = createRequire(import.meta.url).resolve
  const uplot = yield* Effect.try({
    try: () => ({
      js: resolve("uplot/dist/uPlot.iife.min.js"),
      css: resolve("uplot/dist/uPlot.min.css"),
    }),
    catch: (cause) => new Error(`Cannot find the "uplot" package the streaming UI draws its charts with: ${cause}`),
  })
  const read = (path: string) =>
    Effect.mapError(fs.readFileString(path), (e) => new Error(`Cannot read streaming UI asset "${path}": ${e.message}`))
  return {
    html: yield* read(own("index.html")),
    appJs: yield* read(own("app.js")),
    appCss: yield* read(own("app.css")),
    uplotJs: yield* read(uplot.js),
    uplotCss: yield* read(uplot.css),
  }
})

const noStore = { "cache-control": "no-store" }

const json = (body: unknown) => Effect.orDie(HttpServerResponse.json(body, { headers: noStore }))

/** Registers every route on `router`. @internal */
export const addRoutes = (router: HttpRouter.HttpRouter, collector: Collector, assets: Assets) =>
  Effect.gen(function* () {
    const page = HttpServerResponse.html(assets.html)
    const file = (body: string, contentType: string) =>
      HttpServerResponse.text(body, { contentType, headers: { "cache-control": "max-age=3600" } })
    yield* router.add("GET", "/", page)
    yield* router.add("GET", "/batches/:time", page)
    yield* router.add("GET", "/favicon.ico", HttpServerResponse.empty({ status: 204 }))
    yield* router.add("GET", "/static/app.js", file(assets.appJs, "text/javascript; charset=utf-8"))
    yield* router.add("GET", "/static/app.css", file(assets.appCss, "text/css; charset=utf-8"))
    yield* router.add("GET", "/static/uPlot.iife.min.js", file(assets.uplotJs, "text/javascript; charset=utf-8"))
    yield* router.add("GET", "/static/uPlot.min.css", file(assets.uplotCss, "text/css; charset=utf-8"))

    yield* router.add(
      "GET",
      "/api/status",
      Effect.flatMap(Clock.currentTimeMillis, (now) => json(collector.status(now))),
    )
    yield* router.add("GET", "/api/batches", Effect.suspend(() => json(collector.batches())))
    yield* router.add(
      "GET",
      "/api/batches/:time",
      Effect.gen(function* () {
        const params = yield* HttpRouter.params
        const raw = params.time ?? ""
        const time = Number(raw)
        const detail = /^\d+$/.test(raw) ? collector.batch(time) : undefined
        if (detail === undefined) {
          return yield* Effect.orDie(
            HttpServerResponse.json({
              error:
                `No batch at "${raw}": it is neither active nor among the last ${collector.retainedBatches} completed batches`,
            }, { status: 404 }),
          )
        }
        return yield* json(detail)
      }),
    )
    yield* router.add("GET", "/api/timeline", Effect.suspend(() => json(collector.timeline())))
    yield* router.add("GET", "/api/receivers", Effect.suspend(() => json(collector.receivers())))
    yield* router.add("GET", "/api/state", Effect.suspend(() => json(collector.state())))
    yield* router.add("GET", "/api/kafka", Effect.suspend(() => json(collector.kafka())))
    yield* router.add("GET", "/api/graph", Effect.suspend(() => json(collector.graphView())))
    yield* router.add(
      "GET",
      "/api/snapshot",
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        json({
          status: collector.status(now),
          timeline: collector.timeline(),
          batches: collector.batches(100),
          receivers: collector.receivers(),
          state: collector.state(),
          kafka: collector.kafka(),
        })),
    )
    yield* router.add(
      "GET",
      "/metrics",
      Effect.map(PrometheusMetrics.format(), (body) =>
        HttpServerResponse.text(body, {
          contentType: "text/plain; version=0.0.4; charset=utf-8",
          headers: noStore,
        })),
    )
  })
