/** Kafka test helpers: a cluster (KAFKA_BROKERS or librdkafka's mock via kcat), kcat I/O, members. */
import process from "node:process"
import { type ChildProcess, spawn } from "node:child_process"
import kafkajs from "kafkajs"
import { kcat, startMockCluster } from "../../receivers/_kafka_mock.ts"
import { runtimeCommand } from "./child.ts"

export { kcat }

export interface TestCluster {
  readonly brokers: ReadonlyArray<string>
  readonly bootstrap: string
  readonly kind: "mock" | "real"
  readonly stop: () => Promise<void>
}

/** KAFKA_BROKERS when set, else the mock cluster; throws (the test fails) when neither works. */
export const startCluster = async (): Promise<TestCluster> => {
  const env = process.env.KAFKA_BROKERS
  if (env !== undefined && env !== "") {
    return { brokers: env.split(","), bootstrap: env, kind: "real", stop: async () => {} }
  }
  const mock = await startMockCluster()
  return { brokers: [mock.bootstrap], bootstrap: mock.bootstrap, kind: "mock", stop: mock.stop }
}

let counter = 0
/** A fresh topic / group name per test (the mock auto-creates topics with 4 partitions). */
export const unique = (prefix: string): string => `${prefix}-${Date.now().toString(36)}-${counter++}`

/** Small retry config and short timeouts, as the testing reference advises. */
export const fast = {
  sessionTimeout: 4000,
  heartbeatInterval: 400,
  maxWaitTimeInMs: 200,
  retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
} as const

/** Produces `key:value` lines with kcat (keys spread records over partitions). */
export const produce = (
  bootstrap: string,
  topic: string,
  pairs: ReadonlyArray<readonly [string, string]>,
): Promise<string> =>
  kcat(["-P", "-b", bootstrap, "-t", topic, "-K", "\t"], pairs.map(([k, v]) => `${k}\t${v}\n`).join(""))

/** Makes sure a topic exists (auto-created by a metadata request) so partitions are known. */
export const ensureTopic = async (bootstrap: string, topic: string): Promise<void> => {
  await kcat(["-L", "-b", bootstrap, "-t", topic])
}

/** Reads the group's committed offsets per partition (-1 = none). */
export const committedOffsets = async (
  brokers: ReadonlyArray<string>,
  groupId: string,
  topic: string,
): Promise<Map<number, number>> => {
  const kafka = new kafkajs.Kafka({
    brokers: [...brokers],
    logLevel: kafkajs.logLevel.NOTHING,
    retry: { retries: 3, initialRetryTime: 100 },
  })
  const admin = kafka.admin()
  await admin.connect()
  try {
    const res = await admin.fetchOffsets({ groupId, topics: [topic] })
    const out = new Map<number, number>()
    for (const t of res) for (const p of t.partitions) out.set(p.partition, Number(p.offset))
    return out
  } finally {
    await admin.disconnect()
  }
}

export interface MemberLine {
  readonly assignment: ReadonlyArray<number>
  readonly records: ReadonlyArray<readonly [number, number, string]>
}

/** A group member in a child process (tests/_support/kafka_member.ts); collects its output lines. */
export class Member {
  readonly lines: Array<MemberLine> = []
  readonly child: ChildProcess
  stderr = ""
  private waiters: Array<() => void> = []
  constructor(brokers: ReadonlyArray<string>, topic: string, groupId: string, mode = "") {
    const [cmd, args] = runtimeCommand("tests/_support/kafka_member.ts")
    this.child = spawn(cmd, [...args, brokers.join(","), topic, groupId, mode], { stdio: ["ignore", "pipe", "pipe"] })
    let buf = ""
    this.child.stdout!.on("data", (chunk: Uint8Array) => {
      buf += new TextDecoder().decode(chunk)
      let i
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        try {
          this.lines.push(JSON.parse(line))
        } catch {
          // log lines
        }
        for (const w of this.waiters.splice(0)) w()
      }
    })
    this.child.stderr!.on("data", (chunk: Uint8Array) => (this.stderr += new TextDecoder().decode(chunk)))
  }
  get assignment(): ReadonlyArray<number> {
    return this.lines.length === 0 ? [] : this.lines[this.lines.length - 1].assignment
  }
  get records(): Array<readonly [number, number, string]> {
    return this.lines.flatMap((l) => l.records)
  }
  /** Waits until `predicate` holds, failing after `ms`. */
  async until(predicate: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms
    while (!predicate()) {
      if (Date.now() > deadline) {
        throw new Error(`Timed out waiting for ${what}; member stderr: ${this.stderr.slice(-2000)}`)
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200)
        this.waiters.push(() => {
          clearTimeout(t)
          r()
        })
      })
    }
  }
  kill(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve()
      this.child.once("exit", () => resolve())
      this.child.kill(signal)
    })
  }
}

/** Polls `predicate` until true or fails after `ms`. */
export const eventually = async (
  predicate: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
