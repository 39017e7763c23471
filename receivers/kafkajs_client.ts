/**
 * The Kafka client interface (lib/_internal/kafkaClient.ts) on kafkajs 2.2.4: a consumer group
 * whose assignments are full (GROUP_JOIN) and awaited before records of the new assignment are
 * handed on, partition reads to the end (Fetch requests to the partition's leader through
 * kafkajs's broker connection, their record batches decoded by ./_kafka_fetch.ts; a throwaway
 * group as the fallback), a producer with kafkajs's default (murmur2, Java-compatible)
 * partitioner and transactions, and an admin for topics. kafkajs's log lines go through a
 * {@link LogBridge} (Effect's logger, rate-limited).
 *
 * This is the only module that loads kafkajs (tests/layering.test.ts keeps it so); the engine
 * uses the interface only.
 * @internal
 */
import { Buffer } from "node:buffer"
import { createRequire } from "node:module"
import process from "node:process"
import kafkajs from "kafkajs"
import type * as KafkaJS from "kafkajs"
import type * as K from "../lib/_internal/kafkaClient.ts"
import { isRebalanceError } from "../lib/_internal/kafkaClient.ts"
import type { ClientOptions, LogBridge, LogLevelName } from "./kafka.ts"
import {
  decodeFetchResponse,
  decodeRecords,
  type FetchedPartition,
  type FetchResponse,
  fetchVersions,
  noHeaders,
  Raw,
  scanRecordSet,
} from "./_kafka_fetch.ts"

/** kafkajs settings that have no place in the interface, given when the client is made. @internal */
export interface KafkajsSettings {
  /** Passed to `kafka.producer(...)` under the interface's own options. */
  readonly producer?: KafkaJS.ProducerConfig | undefined
  /**
   * How `readPartition` reads: `"fetch"` (default) sends Fetch requests to the partition's
   * leader through kafkajs's own cluster client, with no group; `"group"` uses a consumer in a
   * throwaway group (kafkajs's public API only, but the first join of a group waits the broker's
   * initial rebalance delay, 3 s by default). `"fetch"` falls back to `"group"` when this kafkajs
   * does not have the internals it needs.
   */
  readonly partitionReads?: "fetch" | "group" | undefined
  /**
   * How `"fetch"` reads decode Fetch responses: `"own"` (default) reads record batches of the
   * v2 format without compression straight into records (receivers/_kafka_fetch.ts) and leaves
   * other responses to kafkajs; `"kafkajs"` leaves every response to kafkajs (the comparison
   * baseline of tests and benchmarks).
   */
  readonly fetchDecoding?: "own" | "kafkajs" | undefined
}

/** kafkajs's messages about connections that failed (not error responses of a reachable broker). */
const connectionTrouble =
  /^Connection (error|timeout)|Failed to connect|Closed connection|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|ENETUNREACH/i

/**
 * kafkajs's log lines into `log` (rate-limited); lines about failed connections also go to the
 * bridge's `onConnectionError` and to `onTrouble`.
 */
const logCreatorFor = (log: LogBridge, onTrouble?: (text: string) => void): KafkaJS.logCreator => () => (entry) => {
  const line = entry.log
  const broker = typeof line.broker === "string" && !line.message.includes(line.broker)
    ? ` (broker ${line.broker})`
    : ""
  const text = `${entry.namespace}: ${line.message}${broker}`
  if (entry.level === kafkajs.logLevel.ERROR && connectionTrouble.test(line.message)) {
    log.onConnectionError?.(text)
    onTrouble?.(text)
  }
  const level: LogLevelName = entry.level === kafkajs.logLevel.ERROR
    ? "Error"
    : entry.level === kafkajs.logLevel.WARN
    ? "Warning"
    : entry.level === kafkajs.logLevel.INFO
    ? "Info"
    : "Debug"
  log.line(level, `kafkajs ${text}`)
}

/** A kafkajs client with the user's settings whose log goes to `log`. @internal */
export const makeKafka = (
  client: ClientOptions,
  clientId: string,
  log: LogBridge,
  onTrouble?: (text: string) => void,
): KafkaJS.Kafka =>
  new kafkajs.Kafka({
    brokers: [...client.brokers],
    clientId: client.clientId ?? clientId,
    ...(client.ssl !== undefined ? { ssl: client.ssl } : {}),
    ...(client.sasl !== undefined ? { sasl: client.sasl } : {}),
    ...(client.connectionTimeout !== undefined ? { connectionTimeout: client.connectionTimeout } : {}),
    ...(client.requestTimeout !== undefined ? { requestTimeout: client.requestTimeout } : {}),
    ...(client.retry !== undefined ? { retry: client.retry } : {}),
    logLevel: client.logLevel ?? kafkajs.logLevel.ERROR,
    logCreator: logCreatorFor(log, onTrouble),
  })

/**
 * Spark's `Assign` as a kafkajs partition assigner: every member gets exactly `partitions`
 * (no sharing), still within the group for commits.
 * @internal
 */
export const fixedAssigner = (partitions: ReadonlyArray<K.TopicPartition>): KafkaJS.PartitionAssigner => () => ({
  name: "EffectDStreamAssign",
  version: 0,
  protocol: ({ topics }) => ({
    name: "EffectDStreamAssign",
    metadata: kafkajs.AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }),
  }),
  // kafkajs's assigner contract returns a Promise; this one has nothing to await.
  // deno-lint-ignore require-await
  assign: async ({ members }) => {
    const byTopic: Record<string, Array<number>> = {}
    for (const p of partitions) (byTopic[p.topic] ??= []).push(p.partition)
    return members.map(({ memberId }) => ({
      memberId,
      memberAssignment: kafkajs.AssignerProtocol.MemberAssignment.encode({
        version: 0,
        assignment: byTopic,
        userData: Buffer.alloc(0),
      }),
    }))
  },
})

/** The messages of a kafkajs batch at offsets in `[from, until)` as raw records. */
const rawRecords = (
  topic: string,
  partition: number,
  messages: ReadonlyArray<KafkaJS.KafkaMessage>,
  from: number,
  until: number,
  skipControl = false,
): Array<K.RawRecord> => {
  const out: Array<K.RawRecord> = new Array(messages.length)
  let n = 0
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]
    const offset = +m.offset
    if (offset < from) continue
    if (offset >= until) break
    if (skipControl && (m as { isControlRecord?: boolean }).isControlRecord === true) continue
    const h = m.headers
    let headers = noHeaders
    if (h !== undefined) {
      for (const _ in h) {
        headers = h as K.RawHeaders
        break
      }
    }
    out[n++] = new Raw(
      topic,
      partition,
      offset,
      +m.timestamp,
      (m.key as Uint8Array | null | undefined) ?? null,
      (m.value as Uint8Array | null | undefined) ?? null,
      headers,
    )
  }
  out.length = n
  return out
}

const byTopic = (offsets: ReadonlyArray<K.TopicPartitionOffset>): Array<KafkaJS.TopicOffsets> => {
  const topics = new Map<string, Array<{ partition: number; offset: string }>>()
  for (const o of offsets) {
    let ps = topics.get(o.topic)
    if (ps === undefined) topics.set(o.topic, ps = [])
    ps.push({ partition: o.partition, offset: String(o.offset) })
  }
  return [...topics].map(([topic, partitions]) => ({ topic, partitions }))
}

const toBuffer = (u: Uint8Array | string | null): Buffer | string | null =>
  u === null || typeof u === "string" ? u : Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength)

const toMessages = (records: ReadonlyArray<K.OutgoingRecord>): Array<KafkaJS.TopicMessages> => {
  const topics = new Map<string, Array<KafkaJS.Message>>()
  for (const r of records) {
    let messages = topics.get(r.topic)
    if (messages === undefined) topics.set(r.topic, messages = [])
    const m: KafkaJS.Message = { key: toBuffer(r.key), value: toBuffer(r.value) }
    if (r.partition !== undefined) m.partition = r.partition
    if (r.headers !== undefined) {
      const headers: KafkaJS.IHeaders = {}
      for (const [k, v] of Object.entries(r.headers)) headers[k] = typeof v === "string" ? v : toBuffer(v) as Buffer
      m.headers = headers
    }
    if (r.timestamp !== undefined) m.timestamp = String(r.timestamp)
    messages.push(m)
  }
  return [...topics].map(([topic, messages]) => ({ topic, messages }))
}

const toResults = (metadata: ReadonlyArray<KafkaJS.RecordMetadata>): Array<K.WriteResult> =>
  metadata.map((m) => ({
    topic: m.topicName,
    partition: m.partition,
    baseOffset: Number(m.baseOffset ?? m.offset ?? -1),
  }))

const compressionOf = (c: K.ProducerOptions["compression"]): KafkaJS.CompressionTypes =>
  c === "gzip"
    ? kafkajs.CompressionTypes.GZIP
    : c === "snappy"
    ? kafkajs.CompressionTypes.Snappy
    : c === "lz4"
    ? kafkajs.CompressionTypes.LZ4
    : c === "zstd"
    ? kafkajs.CompressionTypes.ZSTD
    : kafkajs.CompressionTypes.None

const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** Waits `ms` or until `wake` is called (the returned function), whichever comes first. */
const sleep = (ms: number, register: (wake: () => void) => void): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      resolve()
    }
    register(done)
  })

/** Connects `c`; when that fails, disconnects it (stopping kafkajs's retries) and rethrows. */
const connectOrClean = async (c: { connect(): Promise<void>; disconnect(): Promise<void> }): Promise<void> => {
  try {
    await c.connect()
  } catch (e) {
    await c.disconnect().catch(() => undefined)
    throw e
  }
}

let readers = 0

/** What `readPartition` uses of kafkajs's cluster client (src/cluster/index.js, 2.2.4). */
interface KafkajsCluster {
  connect(): Promise<void>
  disconnect(): Promise<void>
  addTargetTopic(topic: string): Promise<void>
  refreshMetadata(): Promise<void>
  findLeaderForPartitions(topic: string, partitions: Array<number>): Record<string, Array<number>>
  findBroker(args: { nodeId: string }): Promise<KafkajsBroker>
  findTopicPartitionMetadata(topic: string): ReadonlyArray<{ readonly partitionId: number }>
}

interface KafkajsPartitionData {
  readonly partition: number
  readonly abortedTransactions: ReadonlyArray<unknown>
  readonly messages: ReadonlyArray<KafkaJS.KafkaMessage>
}

/** A request as kafkajs's connection sends it (src/network/connection.js `send`, 2.2.4). */
interface KafkajsProtocolRequest<A> {
  readonly request: { readonly apiKey: number; readonly apiVersion: number; readonly apiName: string }
  readonly response: {
    decode(payload: Buffer): Promise<A>
    parse(decoded: A): Promise<A>
  }
  readonly requestTimeout?: number | undefined
}

/** kafkajs's broker client's Fetch and ListOffsets (src/broker/index.js, 2.2.4); they throw on error codes. */
interface KafkajsBroker {
  /** The request builder of the best version both sides speak (after `connect`). */
  lookupRequest(apiKey: number, definition: unknown): (args: KafkajsFetchArgs) => KafkajsProtocolRequest<unknown>
  listOffsets(args: {
    replicaId: number
    isolationLevel: number
    topics: Array<{ topic: string; partitions: Array<{ partition: number; timestamp: number }> }>
  }): Promise<{
    responses: ReadonlyArray<{ topic: string; partitions: ReadonlyArray<{ partition: number; offset: string }> }>
  }>
  fetch(args: KafkajsFetchArgs): Promise<KafkajsFetchResponse>
}

interface KafkajsFetchArgs {
  replicaId: number
  isolationLevel: number
  maxWaitTime: number
  minBytes: number
  maxBytes: number
  topics: Array<{ topic: string; partitions: Array<{ partition: number; fetchOffset: string; maxBytes: number }> }>
}

interface KafkajsFetchResponse {
  readonly responses: ReadonlyArray<{ topicName: string; partitions: ReadonlyArray<KafkajsPartitionData> }>
}

interface Internals {
  /** A cluster client with `kafka`'s settings (brokers, TLS, SASL, retry, log). */
  readonly clusterOf: (kafka: KafkaJS.Kafka, isolation: "read_committed" | "read_uncommitted") => KafkajsCluster
  /** kafkajs's consumer filter of records of aborted transactions (src/consumer/filterAbortedMessages.js). */
  readonly filterAborted: (
    messages: ReadonlyArray<KafkaJS.KafkaMessage>,
    abortedTransactions: ReadonlyArray<unknown>,
  ) => ReadonlyArray<KafkaJS.KafkaMessage>
  /**
   * Sends a Fetch request built by kafkajs through `broker` with `response` in place of kafkajs's
   * response decoder (the broker's private request path, which drops a closed connection), or
   * `undefined` when this kafkajs has no such path.
   */
  readonly sendFetch:
    | (<A>(broker: KafkajsBroker, args: KafkajsFetchArgs, response: FetchDecoding<A>) => Promise<A>)
    | undefined
}

/**
 * One Fetch answer for a partition read: our decoding (with the offset after its last complete
 * batch), or kafkajs's; with the throttle time the broker asks the client to keep (kafkajs's
 * connection reads it from the decoded response).
 */
type Answer =
  | {
    readonly own: FetchedPartition
    readonly after: number
    readonly response: FetchResponse
    readonly kafkajs?: undefined
    readonly clientSideThrottleTime: number
  }
  | { readonly own?: undefined; readonly kafkajs: unknown; readonly clientSideThrottleTime?: unknown }

/** How a Fetch response is decoded and checked: kafkajs's own decoder of that version comes as `kafkajs`. */
type FetchDecoding<A> = (
  version: number,
  kafkajs: KafkajsProtocolRequest<unknown>["response"],
) => KafkajsProtocolRequest<A>["response"]

let internals: Internals | null | undefined = undefined

/**
 * kafkajs's internals for reading a partition without a group, or `undefined` when this kafkajs
 * lacks them (then reads go through a throwaway group). kafkajs has no public `assign` or fetch:
 * its `Kafka` keeps the factory of its cluster client under a private symbol.
 */
const kafkajsInternals = (): Internals | undefined => {
  if (internals !== undefined) return internals ?? undefined
  internals = null
  try {
    const probe = new kafkajs.Kafka({ brokers: ["127.0.0.1:9"], logLevel: kafkajs.logLevel.NOTHING })
    const symbol = Object.getOwnPropertySymbols(probe).find((s) => s.description === "private:Kafka:createCluster")
    const require = createRequire(import.meta.url)
    const filter: unknown = require("kafkajs/src/consumer/filterAbortedMessages.js")
    if (symbol === undefined || typeof filter !== "function") return undefined
    const fetchDefinition: unknown = require("kafkajs/src/protocol/requests/index.js").requests?.Fetch
    const fetchKey: unknown = require("kafkajs/src/protocol/requests/apiKeys.js").Fetch
    const brokerClass: unknown = require("kafkajs/src/broker/index.js")
    const prototype = typeof brokerClass === "function" ? brokerClass.prototype as Record<symbol, unknown> : undefined
    const sendSymbol = prototype === undefined
      ? undefined
      : Object.getOwnPropertySymbols(prototype).find((s) => s.description === "private:Broker:sendRequest")
    const canSend = sendSymbol !== undefined && typeof prototype?.[sendSymbol] === "function" &&
      typeof fetchKey === "number" && typeof fetchDefinition === "object" && fetchDefinition !== null
    internals = {
      clusterOf: (kafka, isolation) => {
        const create: unknown = (kafka as unknown as Record<symbol, unknown>)[symbol]
        if (typeof create !== "function") throw new Error("kafkajs has no cluster factory")
        return create({ allowAutoTopicCreation: false, isolationLevel: isolation === "read_committed" ? 1 : 0 })
      },
      filterAborted: (messages, abortedTransactions) =>
        abortedTransactions.length === 0 ? messages : filter({ messages, abortedTransactions }),
      sendFetch: canSend
        ? <A>(broker: KafkajsBroker, args: KafkajsFetchArgs, decoding: FetchDecoding<A>): Promise<A> => {
          const built = broker.lookupRequest(fetchKey, fetchDefinition)(args)
          const send = (broker as unknown as Record<symbol, (r: KafkajsProtocolRequest<A>) => Promise<A>>)[sendSymbol]
          return send.call(broker, { ...built, response: decoding(built.request.apiVersion, built.response) })
        }
        : undefined,
    }
    return internals
  } catch {
    return undefined
  }
}

/**
 * The kafkajs implementation of the client interface. `log` receives kafkajs's log lines (and
 * its failed-connection lines through `onConnectionError`); every consumer, producer and admin
 * gets its own kafkajs client with these settings.
 * @internal
 */
export const kafkajsClient = (
  client: ClientOptions,
  log: LogBridge,
  settings: KafkajsSettings = {},
  clientId = "effect-dstream",
): K.KafkaClient => {
  const consumerGroup = async (
    o: K.ConsumerGroupOptions,
    handlers: K.ConsumerGroupHandlers,
  ): Promise<K.ConsumerGroup> => {
    const kafka = makeKafka(client, `${clientId}-${o.groupId}`, log, (text) => handlers.onRequestFailure?.(text))
    const sub = o.subscription
    const consumer = kafka.consumer({
      groupId: o.groupId,
      sessionTimeout: o.sessionTimeout,
      heartbeatInterval: o.heartbeatInterval,
      rebalanceTimeout: o.rebalanceTimeout,
      maxWaitTimeInMs: o.maxWaitTimeInMs,
      readUncommitted: o.isolation === "read_uncommitted",
      ...(o.maxBytesPerPartition !== undefined ? { maxBytesPerPartition: o.maxBytesPerPartition } : {}),
      ...(client.retry !== undefined ? { retry: client.retry } : {}),
      ...(sub._tag === "Assign" ? { partitionAssigners: [fixedAssigner(sub.partitions)] } : {}),
    })
    let stopped = false
    let generation = 0
    /** The last assignment's handler (and its seeks), chained after the ones before it. */
    let assignment: Promise<void> = Promise.resolve()
    let assignmentSettled = true
    /** A rebalance was seen since the last join (REBALANCING, or a heartbeat that said so). */
    let rebalancing = false
    const noteRebalancing = () => {
      if (rebalancing || stopped) return
      rebalancing = true
      handlers.onRebalancing()
    }
    const seek = (p: K.TopicPartitionOffset) =>
      consumer.seek({ topic: p.topic, partition: p.partition, offset: String(p.offset) })

    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      if (stopped) return
      const assigned: Array<K.TopicPartition> = []
      for (const [topic, partitions] of Object.entries(e.payload.memberAssignment)) {
        for (const partition of partitions) assigned.push({ topic, partition })
      }
      const gen = ++generation
      rebalancing = false
      assignmentSettled = false
      const next = assignment.then(() => handlers.onAssignment(assigned, gen)).then(
        (starts) => {
          if (starts === undefined || stopped) return
          for (const s of starts) {
            try {
              seek(s)
            } catch (error) {
              log.line(
                "Warning",
                `cannot start "${s.topic}" partition ${s.partition} at ${s.offset}: ${errorMessage(error)}`,
              )
            }
          }
        },
        (error) => {
          if (!stopped) handlers.onCrash(error, false)
        },
      )
      assignment = next
      void next.then(() => {
        if (assignment === next) assignmentSettled = true
      })
    })
    consumer.on(consumer.events.REBALANCING, () => noteRebalancing())
    consumer.on(consumer.events.CRASH, (e) => {
      if (!stopped) handlers.onCrash(e.payload.error, e.payload.restart)
    })
    if (handlers.onRequest !== undefined) consumer.on(consumer.events.REQUEST, handlers.onRequest)
    consumer.on(consumer.events.REQUEST_TIMEOUT, (e) => {
      if (!stopped) handlers.onRequestFailure?.(`request to broker ${e.payload.broker} timed out`)
    })

    /** Heartbeats through the fetch loop; a rebalance it reports marks the member rebalancing. */
    const heartbeat = async (payload: KafkaJS.EachBatchPayload): Promise<void> => {
      try {
        await payload.heartbeat()
      } catch (e) {
        if (isRebalanceError(e)) noteRebalancing()
        throw e
      }
    }

    /** Holds the fetch loop (heartbeating) until the pending assignment handler settled. */
    const awaitAssignment = async (payload: KafkaJS.EachBatchPayload): Promise<void> => {
      while (!assignmentSettled && !stopped && payload.isRunning()) {
        const pending = assignment
        await sleep(o.heartbeatInterval, (wake) => void pending.then(wake, wake))
        if (assignmentSettled) break
        await heartbeat(payload)
      }
    }

    const eachBatch = async (payload: KafkaJS.EachBatchPayload): Promise<void> => {
      if (!assignmentSettled) await awaitAssignment(payload)
      const { batch, isRunning, isStale } = payload
      if (stopped || !isRunning() || isStale()) return
      const control: K.FetchControl = {
        heartbeat: () => heartbeat(payload),
        isActive: () => !stopped && !rebalancing && isRunning() && !isStale(),
        commit: (offsets) => payload.commitOffsetsIfNecessary({ topics: byTopic(offsets) }),
      }
      const records = rawRecords(batch.topic, batch.partition, batch.messages, -Infinity, Infinity)
      await handlers.onBatch(
        { topic: batch.topic, partition: batch.partition, records, highWatermark: +batch.highWatermark },
        control,
      )
    }

    try {
      await consumer.connect()
      const topics = sub._tag === "Topics"
        ? [...sub.topics]
        : sub._tag === "Pattern"
        ? [sub.pattern]
        : [...new Set(sub.partitions.map((p) => p.topic))]
      await consumer.subscribe({ topics, fromBeginning: o.fromBeginning })
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: true,
        partitionsConsumedConcurrently: 1,
        eachBatch,
      })
    } catch (e) {
      stopped = true
      await consumer.disconnect().catch(() => undefined)
      throw e
    }
    return {
      seek,
      commit: (offsets) =>
        consumer.commitOffsets(
          offsets.map((c) => ({ topic: c.topic, partition: c.partition, offset: String(c.offset) })),
        ),
      disconnect: async () => {
        stopped = true
        await consumer.disconnect()
      },
    }
  }

  const withAdmin = async <A>(f: (admin: KafkaJS.Admin) => Promise<A>): Promise<A> => {
    const admin = makeKafka(client, `${clientId}-admin`, log).admin()
    await connectOrClean(admin)
    try {
      return await f(admin)
    } finally {
      await admin.disconnect().catch(() => undefined)
    }
  }

  const readPartition = (
    tp: K.TopicPartition,
    fromOffset: number,
    options?: { readonly isolation?: "read_committed" | "read_uncommitted" | undefined },
  ): AsyncIterable<ReadonlyArray<K.RawRecord>> => ({
    async *[Symbol.asyncIterator]() {
      const isolation = options?.isolation ?? "read_committed"
      const internals = settings.partitionReads === "group" ? undefined : kafkajsInternals()
      if (internals !== undefined) {
        yield* fetchReads(tp, fromOffset, isolation, internals)
        return
      }
      // the bounds: kafkajs's ListOffsets asks for the last stable offset (the high-water mark when
      // no transaction is open), so under read_uncommitted records of open transactions are left out too
      const marks = await withAdmin((admin) => admin.fetchTopicOffsets(tp.topic))
      const mark = marks.find((m) => m.partition === tp.partition)
      if (mark === undefined) throw noSuchPartition(tp)
      const bounds = checkBounds(tp, fromOffset, Number(mark.low), Number(mark.high))
      if (bounds !== undefined) yield* groupReads(tp, fromOffset, bounds.low, bounds.end, isolation)
    },
  })

  const noSuchPartition = ({ topic, partition }: K.TopicPartition): Error =>
    new Error(`Cannot read "${topic}" partition ${partition}: the topic has no such partition`)

  /** `undefined` when there is nothing to read from `fromOffset`; throws when it is below the partition's start. */
  const checkBounds = (
    { topic, partition }: K.TopicPartition,
    fromOffset: number,
    low: number,
    end: number,
  ): { readonly low: number; readonly end: number } | undefined => {
    if (fromOffset >= end) return undefined
    if (fromOffset < low) {
      throw new Error(
        `Cannot read "${topic}" partition ${partition} from offset ${fromOffset}: the partition holds offsets ${low} to ${end} only`,
      )
    }
    return { low, end }
  }

  /**
   * Reads from `fromOffset` to the partition's end (its last stable offset when the read starts)
   * with ListOffsets and Fetch requests to the partition's leader, over one connection (no group).
   */
  async function* fetchReads(
    tp: K.TopicPartition,
    fromOffset: number,
    isolation: "read_committed" | "read_uncommitted",
    internals: Internals,
  ): AsyncGenerator<ReadonlyArray<K.RawRecord>> {
    const { topic, partition } = tp
    const kafka = makeKafka(client, `${clientId}-reader`, log)
    const cluster = internals.clusterOf(kafka, isolation)
    const isolationLevel = isolation === "read_committed" ? 1 : 0
    let broker: KafkajsBroker | undefined
    const leader = async (refresh: boolean): Promise<KafkajsBroker> => {
      if (refresh) await cluster.refreshMetadata()
      const byLeader = cluster.findLeaderForPartitions(topic, [partition])
      const nodeId = Object.keys(byLeader).find((id) => byLeader[id].includes(partition))
      if (nodeId === undefined) throw new Error(`Cannot read "${topic}" partition ${partition}: it has no leader`)
      return broker = await cluster.findBroker({ nodeId })
    }
    /** `f` on the leader, again after a metadata refresh when it fails in a way worth retrying. */
    const onLeader = async <A>(f: (b: KafkajsBroker) => Promise<A>): Promise<A> => {
      for (let attempt = 0;; attempt++) {
        try {
          return await f(broker ?? await leader(false))
        } catch (e) {
          // a moved leader or a dropped connection: refresh the metadata and try again
          const retriable = (e as { retriable?: unknown }).retriable === true
          if (!retriable || attempt >= 5) throw e
          await new Promise((r) => setTimeout(r, 100 * 2 ** attempt))
          await leader(true)
        }
      }
    }
    /** The partition's first offset (-2) or its last stable offset (-1), as ListOffsets under read_committed gives it. */
    const offsetAt = (timestamp: -1 | -2): Promise<number> =>
      onLeader(async (b) => {
        const res = await b.listOffsets({
          replicaId: -1,
          isolationLevel: 1,
          topics: [{ topic, partitions: [{ partition, timestamp }] }],
        })
        const offset = res.responses.find((r) => r.topic === topic)?.partitions.find((p) => p.partition === partition)
          ?.offset
        if (offset === undefined) throw new Error(`the broker's answer has no "${topic}" partition ${partition}`)
        return Number(offset)
      })
    const fetchArgs = (offset: number): KafkajsFetchArgs => ({
      replicaId: -1,
      isolationLevel,
      maxWaitTime: 100,
      minBytes: 1,
      maxBytes: 16 << 20,
      topics: [{ topic, partitions: [{ partition, fetchOffset: String(offset), maxBytes: 8 << 20 }] }],
    })
    const ours = <P extends { readonly partition: number }>(
      responses: ReadonlyArray<{ readonly topicName: string; readonly partitions: ReadonlyArray<P> }>,
    ): P => {
      const data = responses.find((r) => r.topicName === topic)?.partitions.find((p) => p.partition === partition)
      if (data === undefined) throw new Error(`the broker's answer has no "${topic}" partition ${partition}`)
      return data
    }
    const sendFetch = settings.fetchDecoding === "kafkajs" ? undefined : internals.sendFetch
    /** Our decoding of the response (v4–v11, record sets we read), else kafkajs's; kafkajs checks the error codes. */
    const decoding: FetchDecoding<Answer> = (version, kafkajs) => ({
      decode: async (payload) => {
        if (version >= fetchVersions.min && version <= fetchVersions.max) {
          const own = decodeFetchResponse(payload, version)
          const data = ours(own.responses)
          const after = scanRecordSet(data.recordSet)
          if (after !== undefined) {
            return { own: data, after, response: own, clientSideThrottleTime: own.clientSideThrottleTime }
          }
        }
        const decoded = await kafkajs.decode(payload)
        return {
          kafkajs: decoded,
          clientSideThrottleTime: (decoded as { clientSideThrottleTime?: unknown }).clientSideThrottleTime,
        }
      },
      parse: async (answer) => {
        if (answer.own !== undefined) {
          await kafkajs.parse(answer.response)
          return answer
        }
        return { kafkajs: await kafkajs.parse(answer.kafkajs) }
      },
    })
    const fetchAt = (offset: number): Promise<Answer> =>
      onLeader(async (b): Promise<Answer> => {
        if (sendFetch === undefined) return { kafkajs: await b.fetch(fetchArgs(offset)) }
        return await sendFetch(b, fetchArgs(offset), decoding)
      })
    try {
      await cluster.connect()
      await cluster.addTargetTopic(topic)
      if (!cluster.findTopicPartitionMetadata(topic).some((p) => p.partitionId === partition)) {
        throw noSuchPartition(tp)
      }
      const bounds = checkBounds(tp, fromOffset, await offsetAt(-2), await offsetAt(-1))
      if (bounds === undefined) return
      const end = bounds.end
      let next = fromOffset
      let stalls = 0
      let ahead: Promise<Answer> | undefined = fetchAt(next)
      while (ahead !== undefined) {
        const answer = await ahead
        ahead = undefined
        let kafkajsData: KafkajsPartitionData | undefined
        let after: number
        if (answer.own !== undefined) after = answer.after
        else {
          kafkajsData = ours((answer.kafkajs as KafkajsFetchResponse).responses)
          let last = -1
          for (const m of kafkajsData.messages) {
            const o = +m.offset
            if (o > last) last = o
          }
          after = last + 1
        }
        const from = next
        if (after > next) next = Math.min(end, after)
        if (next === from && ++stalls > 50) {
          throw new Error(`Cannot read "${topic}" partition ${partition}: no progress at offset ${next} of ${end}`)
        }
        // read the next chunk while this one is handed on
        if (next < end) ahead = fetchAt(next)
        let records: ReadonlyArray<K.RawRecord> = []
        if (answer.own !== undefined) {
          const own = answer.own
          records = decodeRecords(topic, partition, own.recordSet, own.abortedTransactions, from, end).records
        } else if (kafkajsData !== undefined) {
          const kept = internals.filterAborted(kafkajsData.messages, kafkajsData.abortedTransactions)
          records = rawRecords(topic, partition, kept, from, end, true)
        }
        if (records.length > 0) yield records
      }
    } finally {
      await cluster.disconnect().catch(() => undefined)
    }
  }

  /** Reads `[fromOffset, end)` with a consumer in a throwaway group and a fixed assignment. */
  async function* groupReads(
    tp: K.TopicPartition,
    fromOffset: number,
    low: number,
    end: number,
    isolation: "read_committed" | "read_uncommitted",
  ): AsyncGenerator<ReadonlyArray<K.RawRecord>> {
    const { topic, partition } = tp
    const heartbeatInterval = 500
    const kafka = makeKafka(client, `${clientId}-reader`, log)
    const consumer = kafka.consumer({
      groupId: `${clientId}-read-${process.pid}-${Date.now().toString(36)}-${readers++}`,
      sessionTimeout: 10_000,
      heartbeatInterval,
      maxWaitTimeInMs: 100,
      readUncommitted: isolation === "read_uncommitted",
      ...(client.retry !== undefined ? { retry: client.retry } : {}),
      partitionAssigners: [fixedAssigner([tp])],
    })
    const chunks: Array<ReadonlyArray<K.RawRecord>> = []
    let next = fromOffset
    let failure: { readonly error: unknown } | undefined
    let closed = false
    let wakeReader: (() => void) | undefined
    let wakeFetcher: (() => void) | undefined
    const wake = () => {
      const w = wakeReader
      wakeReader = undefined
      w?.()
    }
    consumer.on(consumer.events.CRASH, (e) => {
      if (closed || e.payload.restart) return
      failure = { error: e.payload.error }
      wake()
    })
    try {
      await consumer.connect()
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch, heartbeat, isRunning, isStale }) => {
          if (closed || next >= end || isStale()) return
          const records = rawRecords(topic, partition, batch.messages, next, end)
          // offsets without records (transaction markers, compaction) count as read
          const last = Number(batch.lastOffset())
          if (records.length > 0) next = records[records.length - 1].offset + 1
          if (Number.isFinite(last) && last + 1 > next) next = Math.min(end, last + 1)
          if (records.length > 0) chunks.push(records)
          wake()
          // backpressure: a few chunks ahead of the reader at most
          while (chunks.length >= 4 && !closed && isRunning()) {
            await sleep(heartbeatInterval, (w) => (wakeFetcher = w))
            await heartbeat()
          }
        },
      })
      // joined: start at `fromOffset` (records fetched before the seek applies are skipped)
      if (fromOffset > low) consumer.seek({ topic, partition, offset: String(fromOffset) })
      for (;;) {
        const chunk = chunks.shift()
        if (chunk !== undefined) {
          const w = wakeFetcher
          wakeFetcher = undefined
          w?.()
          yield chunk
          continue
        }
        if (next >= end) return
        if (failure !== undefined) throw failure.error
        await sleep(1000, (w) => (wakeReader = w))
      }
    } finally {
      closed = true
      wakeFetcher?.()
      await consumer.disconnect().catch(() => undefined)
    }
  }

  const producer = async (o: K.ProducerOptions = {}): Promise<K.Producer> => {
    const kafka = makeKafka(client, `${clientId}-producer`, log)
    const config: KafkaJS.ProducerConfig = {
      createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
      ...settings.producer,
      ...(o.transactionalId !== undefined ? { transactionalId: o.transactionalId } : {}),
      ...(o.idempotent !== undefined ? { idempotent: o.idempotent } : {}),
      ...(o.maxInFlightRequests !== undefined ? { maxInFlightRequests: o.maxInFlightRequests } : {}),
    }
    const p = kafka.producer(config)
    await connectOrClean(p)
    const extra = {
      ...(o.acks !== undefined ? { acks: o.acks } : {}),
      ...(o.compression !== undefined ? { compression: compressionOf(o.compression) } : {}),
    }
    return {
      send: async (records) => {
        if (records.length === 0) return []
        return toResults(await p.sendBatch({ topicMessages: toMessages(records), ...extra }))
      },
      transaction: async () => {
        const tx = await p.transaction()
        return {
          send: async (records) => {
            if (records.length === 0) return []
            return toResults(await tx.sendBatch({ topicMessages: toMessages(records), ...extra }))
          },
          sendOffsets: (groupId, offsets) => tx.sendOffsets({ consumerGroupId: groupId, topics: byTopic(offsets) }),
          commit: () => tx.commit(),
          abort: () => tx.abort(),
        }
      },
      disconnect: () => p.disconnect(),
    }
  }

  const admin = async (): Promise<K.Admin> => {
    const a = makeKafka(client, `${clientId}-admin`, log).admin()
    await connectOrClean(a)
    const partitionCounts = async (topics: ReadonlyArray<string>): Promise<ReadonlyMap<string, number>> => {
      const out = new Map<string, number>()
      // one topic per request: kafkajs fails a whole metadata request when one topic is unknown
      for (const topic of topics) {
        try {
          const { topics: found } = await a.fetchTopicMetadata({ topics: [topic] })
          for (const t of found) out.set(t.name, t.partitions.length)
        } catch (e) {
          if ((e as { type?: string }).type !== "UNKNOWN_TOPIC_OR_PARTITION") throw e
        }
      }
      return out
    }
    return {
      createTopics: async (specs) => {
        const existing = await partitionCounts(specs.map((s) => s.topic))
        const missing = specs.filter((s) => !existing.has(s.topic))
        if (missing.length === 0) return []
        await a.createTopics({
          waitForLeaders: true,
          topics: missing.map((s) => ({
            topic: s.topic,
            numPartitions: s.partitions,
            ...(s.replicationFactor !== undefined ? { replicationFactor: s.replicationFactor } : {}),
            ...(s.config !== undefined
              ? { configEntries: Object.entries(s.config).map(([name, value]) => ({ name, value })) }
              : {}),
          })),
        })
        return missing.map((s) => s.topic)
      },
      partitionCounts,
      watermarks: async (topic) =>
        (await a.fetchTopicOffsets(topic)).map((p) => ({
          topic,
          partition: p.partition,
          low: Number(p.low),
          high: Number(p.high),
        })),
      offsetsForTimestamp: async (topic, timestamp) =>
        (await a.fetchTopicOffsetsByTimestamp(topic, timestamp)).map((p) => ({
          topic,
          partition: p.partition,
          offset: Number(p.offset),
        })),
      committed: async (groupId, topic) => {
        const res = await a.fetchOffsets({ groupId, topics: [topic] })
        const out: Array<K.TopicPartitionOffset> = []
        for (const t of res) {
          for (const p of t.partitions) out.push({ topic: t.topic, partition: p.partition, offset: Number(p.offset) })
        }
        return out
      },
      disconnect: () => a.disconnect(),
    }
  }

  return { consumerGroup, readPartition, producer, admin }
}
