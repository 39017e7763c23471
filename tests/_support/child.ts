/**
 * Child processes for process-level tests (crash recovery, write-ahead log, Kafka members):
 * a script runs on the same runtime as the test — Deno under `deno test`, Bun under `bun test`.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { renameSync, writeFileSync } from "node:fs"
import { Option } from "effect"

/** The command that runs `script` on the runtime running this test. */
export const runtimeCommand = (script: string): [string, Array<string>] =>
  "Deno" in globalThis ? ["node_modules/.bin/deno", ["run", "-A", script]] : ["node_modules/.bin/bun", [script]]

/** A running child with its combined stdout / stderr lines. */
export interface Child {
  readonly process: ChildProcess
  readonly log: Array<string>
  readonly exited: Promise<void>
}

/** Starts `script` with `args` on the test's runtime, collecting its output. */
export const startChild = (script: string, args: ReadonlyArray<string>): Child => {
  const [command, base] = runtimeCommand(script)
  const child = spawn(command, [...base, ...args], { stdio: ["ignore", "pipe", "pipe"] })
  const log: Array<string> = []
  child.stdout!.on("data", (d) => log.push(String(d)))
  child.stderr!.on("data", (d) => log.push(String(d)))
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()))
  return { process: child, log, exited }
}

/** SIGKILLs the child and waits until it is gone. */
export const kill = async (child: Child): Promise<void> => {
  child.process.kill("SIGKILL")
  await child.exited
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits until the child's output matches `pattern` (it has started up), failing after `ms`. */
export const waitForLog = async (child: Child, pattern: RegExp, ms = 30_000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!pattern.test(child.log.join(""))) {
    if (Date.now() > deadline) {
      throw new Error(`The child did not log ${pattern} within ${ms} ms; its log:\n${child.log.join("")}`)
    }
    await sleep(20)
  }
}

/** A child's output: the running counts after every batch, written atomically (temp + rename). */
export const writeCounts =
  (outFile: string) => (counts: ReadonlyArray<readonly [unknown, number]>, time: number): void => {
    const tmp = `${outFile}.tmp`
    writeFileSync(tmp, JSON.stringify({ time, counts: Object.fromEntries(counts) }))
    renameSync(tmp, outFile)
  }

/** The running sum of a key's values, as updateStateByKey's function (the seed's word count). */
export const runningSum = (values: ReadonlyArray<number>, state: Option.Option<number>): Option.Option<number> =>
  Option.some(values.reduce((a, b) => a + b, Option.getOrElse(state, () => 0)))
