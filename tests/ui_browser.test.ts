/// <reference lib="dom" />
/**
 * The streaming page in a real browser: a live pipeline (socket receiver → words → a stateful
 * count, and an output that fails on the last batch) served by StreamingUI, opened in headless
 * Chromium (Debian's `/usr/bin/chromium`, driven by playwright-core). Checks that the page
 * updates itself while the job runs, then that the status line, the four charts, the inputs
 * table, the completed batches (the failed one marked), a batch page with its output
 * operations, the state panel and the DAG show the run's numbers. Saves a screenshot in the
 * test's temp dir (and to `UI_SCREENSHOT` when that is set, for docs/streaming-ui.png).
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { copyFile, mkdtemp, rm, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import process from "node:process"
import { Effect, Metric, Option } from "effect"
import { type BrowserContext, chromium, type Page } from "playwright-core"
import { StreamingContext } from "../mod.ts"
import * as StreamingUI from "../lib/StreamingUI.ts"
import { collectEvents, completed, live, waitFor } from "./_support/live.ts"
import { type LineServer, startLineServer } from "./_support/line_server.ts"

const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]

describe("StreamingUI in a browser", () => {
  let dir = ""
  let server: LineServer | undefined
  let browser: BrowserContext | undefined

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "dstream-ui-browser-"))
    server = await startLineServer()
    // A fresh profile directory per run (playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(join(dir, "profile"), {
      executablePath: "/usr/bin/chromium",
      args: chromiumArgs,
      viewport: { width: 1300, height: 900 },
    })
  })

  after(async () => {
    await browser?.close()
    await server?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it("shows a running job live, then its batches, failure, state and graph", { timeout: 90_000 }, async () => {
    const lineServer = server!
    const rounds = 12
    const sentLines: Array<string> = []
    const text = await live(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
        ssc.checkpoint(join(dir, "checkpoint"))
        const ui = yield* StreamingUI.serve(ssc, { port: 0 })
        const events = collectEvents(ssc)
        const lines = ssc.socketTextStream("127.0.0.1", lineServer.port)
        let stateKeys = 0
        lines.flatMap((line) => line.split(" "))
          .mapToPair((w) => [w, 1])
          .updateStateByKey(
            (vs: ReadonlyArray<number>, s: Option.Option<number>) =>
              Option.some(vs.reduce((a, b) => a + b, Option.getOrElse(s, () => 0))),
            { name: "word counts" },
          )
          .checkpoint("400 millis")
          .foreachBatch((state) => {
            stateKeys = state.length
          })
        let failedRecords = -1
        lines.foreachBatch((batch) => {
          if (batch.includes("boom")) {
            failedRecords = batch.length
            throw new Error('a line said "boom"')
          }
        })
        yield* ssc.start
        yield* Effect.promise(() => lineServer.waitForClients(1))

        const page: Page = yield* Effect.promise(() => browser!.newPage())
        const pageErrors: Array<string> = []
        page.on("pageerror", (e) => pageErrors.push(e.message))
        const send = (round: number) => {
          const batch = Array.from({ length: round + 1 }, (_, i) => `alpha beta w${round} v${i % 3}`)
          sentLines.push(...batch)
          return Effect.promise(() => lineServer.send(batch.map((l) => l + "\n").join("")))
        }
        for (let round = 0; round < rounds / 2; round++) {
          yield* send(round)
          yield* Effect.sleep("120 millis")
        }
        yield* Effect.promise(() => page.goto(ui.url))
        yield* Effect.promise(() => page.waitForSelector("#completed-count"))
        const before = Number((yield* Effect.promise(() => page.textContent("#completed-count")))!.replace(/,/g, ""))
        for (let round = rounds / 2; round < rounds; round++) {
          yield* send(round)
          yield* Effect.sleep("120 millis")
        }
        // The page updates itself (no reload): the completed count grows.
        yield* Effect.promise(() =>
          page.waitForFunction(
            (n) => Number(document.getElementById("completed-count")!.textContent!.replace(/,/g, "")) > n + 2,
            before,
            { timeout: 20_000 },
          )
        )
        yield* Effect.promise(() => lineServer.send("boom\n"))
        sentLines.push("boom")
        yield* waitFor(() => events.some((e) => e._tag === "StreamingStopped"), "the failing batch to stop the context")
        const done = completed(events)
        const failedTime = events.flatMap((e) =>
          e._tag === "OutputOperationCompleted" && e.outputOperationInfo.failureReason !== undefined
            ? [e.outputOperationInfo.batchTime]
            : []
        )[0]
        // The page notices the stop by itself.
        yield* Effect.promise(() =>
          page.waitForFunction(
            () =>
              /stopped/.test(document.getElementById("status-line")!.textContent!),
            null,
            {
              timeout: 20_000,
            },
          )
        )
        yield* Effect.sleep("300 millis")

        // ---- main page ----
        const statusLine = (yield* Effect.promise(() => page.textContent("#status-line")))!
        const charts = yield* Effect.promise(() =>
          page.evaluate(() =>
            ["inputRate", "schedulingDelay", "processingTime", "totalDelay"].map((k) => {
              const c = document.querySelector(`#chart-${k} canvas`) as HTMLCanvasElement | null
              const h = document.querySelector(`#hist-${k} canvas`) as HTMLCanvasElement | null
              return { key: k, timeline: c ? c.width : 0, histogram: h ? h.width : 0 }
            })
          )
        )
        const inputRows = yield* Effect.promise(() =>
          page.$$eval(
            "#receivers-table tbody tr",
            (rows) =>
              rows.map((r) => Array.from(r.querySelectorAll("td")).slice(0, 4).map((td) => td.textContent!.trim())),
          )
        )
        const completedRows = yield* Effect.promise(() =>
          page.$$eval("#completed-batches tbody tr", (rows) =>
            rows.map((r) => ({
              time: Number((r as HTMLElement).dataset.time),
              failed: r.classList.contains("failed"),
              records: Number(r.querySelectorAll("td")[1].textContent!.replace(/,/g, "")),
              ops: r.querySelectorAll("td")[5].textContent!.trim(),
              error: r.querySelectorAll("td")[6].textContent!.trim(),
            })))
        )
        const stateRows = yield* Effect.promise(() =>
          page.$$eval(
            "#state-table tbody tr",
            (rows) => rows.map((r) => Array.from(r.querySelectorAll("td")).map((td) => td.textContent!.trim())),
          )
        )
        const stateSummary = (yield* Effect.promise(() => page.textContent("#state-summary")))!
        const dagKinds = yield* Effect.promise(() =>
          page.$$eval("#dag .node", (nodes) => nodes.map((n) => (n as HTMLElement).dataset.kind!))
        )
        const dagEdges = yield* Effect.promise(() => page.$$eval("#dag svg path[data-edge]", (p) => p.length))
        // Hovering the input-rate timeline shows "<value> records/sec at <time>".
        const box = (yield* Effect.promise(() => page.locator("#chart-inputRate .u-over").boundingBox()))!
        yield* Effect.promise(() => page.mouse.move(box.x + box.width - 3, box.y + box.height / 2))
        const tip = yield* Effect.promise(() => page.textContent("#tooltip"))
        const screenshot = join(dir, "streaming-ui.png")
        yield* Effect.promise(() => page.screenshot({ path: screenshot, fullPage: true }))
        if (process.env.UI_SCREENSHOT) yield* Effect.promise(() => copyFile(screenshot, process.env.UI_SCREENSHOT!))

        // ---- batch page of the failed batch ----
        yield* Effect.promise(() => page.click(`#completed-batches tr[data-time="${failedTime}"] a`))
        yield* Effect.promise(() => page.waitForSelector("#batch-outputs"))
        const batchTitle = (yield* Effect.promise(() => page.textContent("#batch-title")))!
        const batchRecords = (yield* Effect.promise(() => page.textContent("#batch-records")))!
        const outputs = yield* Effect.promise(() =>
          page.$$eval(
            "#batch-outputs tbody tr",
            (rows) => rows.map((r) => Array.from(r.querySelectorAll("td")).map((td) => td.textContent!.trim())),
          )
        )
        const batchScreenshot = join(dir, "batch.png")
        yield* Effect.promise(() => page.screenshot({ path: batchScreenshot, fullPage: true }))
        yield* Effect.promise(() => page.close())
        return {
          done,
          failedTime,
          failedRecords,
          stateKeys,
          statusLine,
          charts,
          inputRows,
          completedRows,
          stateRows,
          stateSummary,
          dagKinds,
          dagEdges,
          tip,
          batchTitle,
          batchRecords,
          outputs,
          pageErrors,
          screenshot,
          batchScreenshot,
        }
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())),
    )

    const r = text
    assert.deepEqual(r.pageErrors, [])
    const completedCount = r.done.length + 1
    const distinct = new Set(sentLines.flatMap((l) => l.split(" "))).size
    // Status line: interval, completed batches (the failed one included), records, stopped.
    assert.match(r.statusLine, /^Ran batches of 200 ms for .+ since \d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d/)
    assert.match(r.statusLine, new RegExp(`\\(${completedCount} completed batches, ${sentLines.length} records\\)`))
    assert.match(r.statusLine, /1 failed/)
    assert.match(r.statusLine, /stopped/)
    // The four timelines and their histograms are drawn.
    for (const c of r.charts) {
      assert.ok(c.timeline > 0 && c.histogram > 0, `${c.key} charts drawn`)
    }
    assert.match(r.tip ?? "", /^[\d,.]+ records\/sec at \d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d/)
    // The receiver's row.
    assert.equal(r.inputRows.length, 1)
    assert.match(r.inputRows[0][0], /^socket 127\.0\.0\.1:\d+ReceiverInputDStream$/)
    assert.equal(r.inputRows[0][1], "INACTIVE")
    // Completed batches: newest first, the failed one marked with its error.
    assert.equal(r.completedRows.length, completedCount)
    assert.equal(r.completedRows[0].time, r.failedTime)
    assert.ok(r.completedRows[0].failed)
    assert.match(r.completedRows[0].error, /a line said "boom"/)
    assert.match(r.completedRows[0].ops, /^1\/2 \(1 failed\)$/)
    assert.equal(r.completedRows[0].records, r.failedRecords)
    assert.equal(r.completedRows.filter((x) => x.failed).length, 1)
    for (const row of r.completedRows.slice(1)) {
      const info = r.done.find((b) => b.batchTime === row.time)!
      assert.equal(row.records, info.numRecords)
      assert.equal(row.ops, "2/2")
    }
    assert.equal(r.completedRows.reduce((n, x) => n + x.records, 0), sentLines.length)
    // State panel: the stateful stream's keys, and the checkpoints.
    assert.equal(r.stateRows.length, 1)
    assert.match(r.stateRows[0][0], /^StateDStream "word counts"$/)
    assert.equal(Number(r.stateRows[0][1].replace(/,/g, "")), distinct)
    assert.equal(r.stateKeys, distinct)
    assert.match(r.stateSummary, /^Checkpoints every 400 ms to .*checkpoint; last after batch \d{4}\//)
    // The DAG: receiver → the fused flatMap+mapToPair → state → output, and receiver → output.
    assert.deepEqual([...r.dagKinds].sort(), [
      "ForEachDStream",
      "ForEachDStream",
      "MappedDStream",
      "ReceiverInputDStream",
      "StateDStream",
    ])
    assert.equal(r.dagEdges, 4)
    // The failed batch's page.
    assert.match(r.batchTitle, /^Details of batch at \d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d/)
    assert.equal(r.batchRecords, `${r.failedRecords} records`)
    assert.equal(r.outputs.length, 2)
    assert.deepEqual(r.outputs.map((o) => [o[0], o[1], o[3]]), [["0", "foreachBatch", "Succeeded"], [
      "1",
      "foreachBatch",
      "Failed",
    ]])
    assert.match(r.outputs[1][4], /Failed due to: a line said "boom"/)
    assert.ok((await stat(r.screenshot)).size > 10_000)
    assert.ok((await stat(r.batchScreenshot)).size > 5_000)
  })
})
