/**
 * librdkafka's mock cluster, started as a `kcat` side process (`-X test.mock.num.brokers=N`),
 * for tests, the example and the benchmark. Topics are auto-created with 4 partitions on
 * first use. Also: `kcat` as an independent producer and reader.
 * @internal
 */
import { type ChildProcess, spawn } from "node:child_process"

/** A running mock cluster. @internal */
export interface MockCluster {
  /** `127.0.0.1:<port>` */
  readonly bootstrap: string
  readonly stop: () => Promise<void>
}

/** Starts the mock cluster; rejects (never skips) when kcat is missing or prints no address. @internal */
export const startMockCluster = (
  options?: { readonly brokers?: number; readonly timeoutMs?: number },
): Promise<MockCluster> =>
  new Promise((resolve, reject) => {
    let child: ChildProcess
    try {
      child = spawn("kcat", [
        "-C",
        "-b",
        "dummy:1",
        "-t",
        "__mock_hold",
        "-o",
        "end",
        "-q",
        "-X",
        `test.mock.num.brokers=${options?.brokers ?? 1}`,
      ], { stdio: ["ignore", "ignore", "pipe"] })
    } catch (error) {
      reject(new Error(`Cannot start librdkafka's mock cluster: kcat failed to spawn: ${String(error)}`))
      return
    }
    let stderr = ""
    let done = false
    const timer = setTimeout(() => {
      if (done) return
      done = true
      child.kill("SIGKILL")
      reject(new Error(`Cannot start librdkafka's mock cluster: no address printed by kcat within timeout: ${stderr}`))
    }, options?.timeoutMs ?? 10_000)
    child.on("error", (error) => {
      if (done) return
      done = true
      clearTimeout(timer)
      reject(
        new Error(
          `Cannot start librdkafka's mock cluster (is kcat installed? apt-get install -y kcat): ${error.message}`,
        ),
      )
    })
    child.on("exit", (code) => {
      if (done) return
      done = true
      clearTimeout(timer)
      reject(new Error(`Cannot start librdkafka's mock cluster: kcat exited with code ${code}: ${stderr}`))
    })
    child.stderr!.on("data", (chunk: Uint8Array) => {
      stderr += new TextDecoder().decode(chunk)
      const m = /replaced with ([0-9.]+:\d+(?:,[0-9.]+:\d+)*)/.exec(stderr)
      if (m && !done) {
        done = true
        clearTimeout(timer)
        resolve({
          bootstrap: m[1],
          stop: () =>
            new Promise<void>((res) => {
              if (child.exitCode !== null || child.signalCode !== null) return res()
              child.once("exit", () => res())
              child.kill("SIGTERM")
              setTimeout(() => {
                child.kill("SIGKILL")
                res()
              }, 2000).unref?.()
            }),
        })
      }
    })
  })

/** Runs kcat to completion with `args`, feeding `input` on stdin; resolves with stdout. @internal */
export const kcat = (args: ReadonlyArray<string>, input?: string, timeoutMs = 30_000): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn("kcat", [...args], { stdio: ["pipe", "pipe", "pipe"] })
    let out = ""
    let err = ""
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`kcat ${args.join(" ")} timed out: ${err}`))
    }, timeoutMs)
    child.stdout!.on("data", (c: Uint8Array) => (out += new TextDecoder().decode(c)))
    child.stderr!.on("data", (c: Uint8Array) => (err += new TextDecoder().decode(c)))
    child.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on("exit", (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(out)
      else reject(new Error(`kcat ${args.join(" ")} exited with ${code}: ${err}`))
    })
    if (input !== undefined) child.stdin!.end(input)
    else child.stdin!.end()
  })
