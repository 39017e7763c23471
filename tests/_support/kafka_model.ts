/**
 * An in-memory implementation of the engine's Kafka client interface
 * (lib/_internal/kafkaClient.ts) that models what librdkafka's mock cluster does not
 * (../shared/reference/kafka-eos.md): transactions and their visibility, offsets committed by a
 * transaction, and fencing of a zombie producer. Tests drive the engine with it to show the
 * exactly-once guarantees; the protocol path is tested against the mock through the proxy.
 *
 * What it models, as Kafka does:
 * - topics with partitions, each an append-only log; a record without `partition` lands on
 *   murmur2(key) (Kafka's default partitioner) or round-robin without a key; unknown topics are
 *   auto-created with `autoCreatePartitions` (4, as the mock does) unless that is 0;
 * - transactions: records of an open or aborted transaction are invisible to `read_committed`
 *   readers (the last stable offset stops at the first open transaction's record), visible once
 *   committed; a commit or abort writes a control record (an offset no reader sees);
 *   `sendOffsets` reaches the group's committed offsets only on commit;
 * - fencing: a producer created with a `transactionalId` bumps that id's epoch and aborts its
 *   open transaction; the older producer's later `send`, `sendOffsets`, `commit` and
 *   `transaction` fail with {@link ProducerFencedError};
 * - consumer groups: members of one group share the subscribed partitions round-robin in join
 *   order (one member gets them all); a join or leave rebalances (`onRebalancing`, then
 *   `onAssignment` with a new generation); a member starts a partition at the group's committed
 *   offset, else at its start (`fromBeginning`) or end;
 * - failure injection: {@link KafkaModel.failNext} makes the next call of an operation throw.
 */
import { murmur2 } from "../../lib/_internal/repartition.ts"
import type {
  Admin,
  ConsumerGroup,
  ConsumerGroupHandlers,
  ConsumerGroupOptions,
  KafkaClient,
  OutgoingRecord,
  Producer,
  ProducerOptions,
  RawRecord,
  TopicPartition,
  TopicPartitionOffset,
  TopicSpec,
  Transaction,
  WriteResult,
} from "../../lib/_internal/kafkaClient.ts"

/** A newer producer with the same transactional id exists (Kafka's PRODUCER_FENCED / INVALID_PRODUCER_EPOCH). */
export class ProducerFencedError extends Error {
  constructor(readonly transactionalId: string, readonly epoch: number, readonly current: number) {
    super(
      `Producer with transactional id "${transactionalId}" was fenced: epoch ${epoch} is older than the current epoch ${current}`,
    )
    this.name = "ProducerFencedError"
  }
}

/** An error injected by {@link KafkaModel.failNext}. */
export class InjectedFailure extends Error {
  constructor(readonly operation: Operation) {
    super(`Injected failure of "${operation}"`)
    this.name = "InjectedFailure"
  }
}

/** Operations a test can make fail once. */
export type Operation = "send" | "sendOffsets" | "commit" | "transaction"

interface Txn {
  state: "open" | "committed" | "aborted"
  readonly transactionalId: string
  readonly offsets: Map<string, Map<string, TopicPartitionOffset>>
  readonly partitions: Set<string>
}

interface Entry {
  readonly record: RawRecord
  /** The transaction that wrote it (undefined: a plain write). */
  readonly txn: Txn | undefined
  /** A commit/abort marker: takes an offset, never delivered. */
  readonly control: boolean
}

interface MemberState {
  readonly id: number
  readonly options: ConsumerGroupOptions
  readonly handlers: ConsumerGroupHandlers
  assigned: Array<TopicPartition>
  generation: number
  readonly positions: Map<string, number>
  rebalancing: boolean
  stopped: boolean
  wake: (() => void) | undefined
}

interface GroupState {
  readonly committed: Map<string, TopicPartitionOffset>
  readonly members: Array<MemberState>
  generation: number
}

const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`
const encoder = new TextEncoder()
const toBytes = (u: Uint8Array | string | null): Uint8Array | null =>
  u === null ? null : typeof u === "string" ? encoder.encode(u) : u

/** The in-memory cluster; {@link KafkaModel.client} is a {@link KafkaClient} on it. */
export class KafkaModel {
  private readonly topics = new Map<string, Array<Array<Entry>>>()
  private readonly groups = new Map<string, GroupState>()
  private readonly epochs = new Map<string, number>()
  private readonly openTxns = new Map<string, Txn>()
  private readonly failures = new Map<Operation, number>()
  private readonly roundRobin = new Map<string, number>()
  private memberIds = 0
  private readonly members = new Set<MemberState>()

  constructor(readonly options: { readonly autoCreatePartitions?: number } = {}) {}

  /**
   * Makes the next `times` calls of `operation` (on any producer or transaction; for `send`, only
   * sends with a record for `topic` when given) throw {@link InjectedFailure}.
   */
  failNext(operation: Operation, times = 1, topic?: string): void {
    this.failures.set(operation, (this.failures.get(operation) ?? 0) + times)
    if (topic !== undefined) this.failTopic = topic
  }
  private failTopic: string | undefined = undefined

  private maybeFail(operation: Operation, records?: ReadonlyArray<OutgoingRecord>): void {
    const n = this.failures.get(operation) ?? 0
    if (n === 0) return
    if (records !== undefined && this.failTopic !== undefined && !records.some((r) => r.topic === this.failTopic)) {
      return
    }
    this.failures.set(operation, n - 1)
    throw new InjectedFailure(operation)
  }

  createTopic(topic: string, partitions: number): boolean {
    if (this.topics.has(topic)) return false
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new Error(`Cannot create topic "${topic}": partitions must be a positive integer, got ${partitions}`)
    }
    this.topics.set(topic, Array.from({ length: partitions }, () => []))
    for (const [groupId, g] of this.groups) if (g.members.length > 0) this.rebalance(groupId)
    return true
  }

  private log(topic: string): Array<Array<Entry>> {
    let log = this.topics.get(topic)
    if (log === undefined) {
      const n = this.options.autoCreatePartitions ?? 4
      if (n === 0) throw new Error(`Unknown topic "${topic}": auto-creation is off`)
      this.createTopic(topic, n)
      log = this.topics.get(topic)!
    }
    return log
  }

  private partitionLog(topic: string, partition: number): Array<Entry> {
    const log = this.log(topic)
    const p = log[partition]
    if (p === undefined) {
      throw new Error(`Unknown partition ${partition} of topic "${topic}": it has ${log.length} partitions`)
    }
    return p
  }

  /** Where a read of `isolation` stops: the high-water mark, or the first open transaction's record. */
  endOffset(topic: string, partition: number, isolation: "read_committed" | "read_uncommitted"): number {
    const p = this.partitionLog(topic, partition)
    if (isolation === "read_uncommitted") return p.length
    const open = p.findIndex((e) => e.txn?.state === "open")
    return open < 0 ? p.length : open
  }

  /** Records of `[from, until)` a reader with `isolation` sees. */
  visible(
    topic: string,
    partition: number,
    from: number,
    until: number,
    isolation: "read_committed" | "read_uncommitted",
  ): Array<RawRecord> {
    const p = this.partitionLog(topic, partition)
    const out: Array<RawRecord> = []
    for (let o = Math.max(0, from); o < Math.min(until, p.length); o++) {
      const e = p[o]
      if (e.control) continue
      if (isolation === "read_committed" && e.txn !== undefined && e.txn.state !== "committed") continue
      out.push(e.record)
    }
    return out
  }

  /** Every record of a topic a `read_committed` reader sees (for assertions). */
  committedRecords(topic: string): Array<RawRecord> {
    const log = this.topics.get(topic) ?? []
    return log.flatMap((_, p) =>
      this.visible(topic, p, 0, this.endOffset(topic, p, "read_committed"), "read_committed")
    )
  }

  /** A group's committed offsets (absent: none). */
  committedOffsets(groupId: string): ReadonlyMap<string, TopicPartitionOffset> {
    return new Map(this.groups.get(groupId)?.committed ?? [])
  }

  private group(groupId: string): GroupState {
    let g = this.groups.get(groupId)
    if (g === undefined) this.groups.set(groupId, g = { committed: new Map(), members: [], generation: 0 })
    return g
  }

  private append(records: ReadonlyArray<OutgoingRecord>, txn: Txn | undefined): Array<WriteResult> {
    const results = new Map<string, WriteResult>()
    for (const r of records) {
      const log = this.log(r.topic)
      const key = toBytes(r.key)
      let partition = r.partition
      if (partition === undefined) {
        if (key === null) {
          const n = this.roundRobin.get(r.topic) ?? 0
          this.roundRobin.set(r.topic, n + 1)
          partition = n % log.length
        } else partition = (murmur2(key) & 0x7fffffff) % log.length
      }
      const p = this.partitionLog(r.topic, partition)
      const offset = p.length
      const headers: Record<string, Uint8Array | string> = { ...(r.headers ?? {}) }
      p.push({
        record: {
          topic: r.topic,
          partition,
          offset,
          timestamp: r.timestamp ?? Date.now(),
          key,
          value: toBytes(r.value),
          headers,
        },
        txn,
        control: false,
      })
      txn?.partitions.add(tpKey(r.topic, partition))
      const k = tpKey(r.topic, partition)
      if (!results.has(k)) results.set(k, { topic: r.topic, partition, baseOffset: offset })
    }
    this.wakeAll()
    return [...results.values()]
  }

  private end(txn: Txn, state: "committed" | "aborted"): void {
    txn.state = state
    for (const k of txn.partitions) {
      const [topic, partition] = k.split("\u0000")
      const p = this.partitionLog(topic, Number(partition))
      p.push({
        record: {
          topic,
          partition: Number(partition),
          offset: p.length,
          timestamp: Date.now(),
          key: null,
          value: null,
          headers: {},
        },
        txn,
        control: true,
      })
    }
    if (state === "committed") {
      for (const [groupId, offsets] of txn.offsets) {
        const g = this.group(groupId)
        for (const [k, o] of offsets) g.committed.set(k, o)
      }
    }
    if (this.openTxns.get(txn.transactionalId) === txn) this.openTxns.delete(txn.transactionalId)
    this.wakeAll()
  }

  private wakeAll(): void {
    for (const m of this.members) {
      const w = m.wake
      m.wake = undefined
      w?.()
    }
  }

  // ---- producers ----

  private producer(options?: ProducerOptions): Producer {
    const transactionalId = options?.transactionalId
    let epoch = 0
    if (transactionalId !== undefined) {
      epoch = (this.epochs.get(transactionalId) ?? -1) + 1
      this.epochs.set(transactionalId, epoch)
      // InitProducerId aborts what the previous incarnation left open
      const open = this.openTxns.get(transactionalId)
      if (open !== undefined) this.end(open, "aborted")
    }
    let closed = false
    const check = () => {
      if (closed) throw new Error(`Producer is disconnected`)
      if (transactionalId === undefined) return
      const current = this.epochs.get(transactionalId)!
      if (current !== epoch) throw new ProducerFencedError(transactionalId, epoch, current)
    }
    let current: Txn | undefined
    return {
      send: async (records) => {
        await Promise.resolve()
        check()
        if (transactionalId !== undefined) {
          throw new Error(`Producer with transactional id "${transactionalId}" can only send inside a transaction`)
        }
        this.maybeFail("send", records)
        return this.append(records, undefined)
      },
      transaction: async () => {
        await Promise.resolve()
        check()
        if (transactionalId === undefined) {
          throw new Error("Cannot start a transaction: the producer has no transactionalId")
        }
        if (current !== undefined && current.state === "open") {
          throw new Error(`Transaction of "${transactionalId}" is already open`)
        }
        this.maybeFail("transaction")
        const txn: Txn = { state: "open", transactionalId, offsets: new Map(), partitions: new Set() }
        current = txn
        this.openTxns.set(transactionalId, txn)
        const live = () => {
          check()
          if (txn.state !== "open") throw new Error(`Transaction of "${transactionalId}" is already ${txn.state}`)
        }
        const transaction: Transaction = {
          send: async (records) => {
            await Promise.resolve()
            live()
            this.maybeFail("send", records)
            return this.append(records, txn)
          },
          sendOffsets: async (groupId, offsets) => {
            await Promise.resolve()
            live()
            this.maybeFail("sendOffsets")
            let m = txn.offsets.get(groupId)
            if (m === undefined) txn.offsets.set(groupId, m = new Map())
            for (const o of offsets) m.set(tpKey(o.topic, o.partition), o)
          },
          commit: async () => {
            await Promise.resolve()
            live()
            this.maybeFail("commit")
            this.end(txn, "committed")
          },
          abort: async () => {
            await Promise.resolve()
            live()
            this.end(txn, "aborted")
          },
        }
        return transaction
      },
      disconnect: async () => {
        await Promise.resolve()
        closed = true
      },
    }
  }

  // ---- consumer groups ----

  private subscribed(m: MemberState): Array<TopicPartition> {
    const s = m.options.subscription
    if (s._tag === "Assign") return [...s.partitions]
    const names = s._tag === "Topics"
      ? s.topics.filter((t) => this.topics.has(t))
      : [...this.topics.keys()].filter((t) => s.pattern.test(t))
    return names.sort().flatMap((t) => this.topics.get(t)!.map((_, partition) => ({ topic: t, partition })))
  }

  private rebalance(groupId: string): void {
    const g = this.group(groupId)
    const live = g.members.filter((m) => !m.stopped)
    if (live.length === 0) return
    g.generation++
    for (const m of live) {
      m.rebalancing = true
      m.handlers.onRebalancing()
    }
    // every subscribed partition, round-robin over members in join order (fixed assignments stay)
    const shared = live.filter((m) => m.options.subscription._tag !== "Assign")
    const all = new Map<string, TopicPartition>()
    for (const m of shared) for (const tp of this.subscribed(m)) all.set(tpKey(tp.topic, tp.partition), tp)
    const next = new Map<MemberState, Array<TopicPartition>>(live.map((m) => [m, []]))
    let i = 0
    for (const tp of all.values()) {
      const candidates = shared.filter((m) => this.subscribed(m).some((x) => x.topic === tp.topic))
      if (candidates.length === 0) continue
      next.get(candidates[i++ % candidates.length])!.push(tp)
    }
    for (const m of live) if (m.options.subscription._tag === "Assign") next.set(m, this.subscribed(m))
    for (const m of live) {
      m.assigned = next.get(m)!
      m.generation = g.generation
      // positions are re-read from the group's commits after a rebalance (as a fresh fetch does)
      m.positions.clear()
      const w = m.wake
      m.wake = undefined
      w?.()
    }
  }

  private startPosition(m: MemberState, tp: TopicPartition): number {
    const c = this.group(m.options.groupId).committed.get(tpKey(tp.topic, tp.partition))
    if (c !== undefined) return c.offset
    return m.options.fromBeginning ? 0 : this.endOffset(tp.topic, tp.partition, "read_uncommitted")
  }

  private async runMember(m: MemberState): Promise<void> {
    let announced = -1
    while (!m.stopped) {
      if (m.generation !== announced) {
        announced = m.generation
        const generation = m.generation
        const starts = await m.handlers.onAssignment([...m.assigned], generation)
        if (m.generation === generation) {
          m.rebalancing = false
          // positions the handler asked for win over the group's committed offsets
          for (const s of starts ?? []) m.positions.set(tpKey(s.topic, s.partition), s.offset)
        }
        continue
      }
      let delivered = false
      for (const tp of [...m.assigned]) {
        if (m.stopped || m.generation !== announced) break
        const k = tpKey(tp.topic, tp.partition)
        let pos = m.positions.get(k)
        if (pos === undefined) m.positions.set(k, pos = this.startPosition(m, tp))
        const end = this.endOffset(tp.topic, tp.partition, m.options.isolation)
        if (pos >= end) continue
        const records = this.visible(tp.topic, tp.partition, pos, end, m.options.isolation)
        m.positions.set(k, end)
        if (records.length === 0) continue
        delivered = true
        const generation = m.generation
        await m.handlers.onBatch({ topic: tp.topic, partition: tp.partition, records, highWatermark: end }, {
          heartbeat: async () => {
            await Promise.resolve()
            if (m.stopped || m.generation !== generation) throw new Error("The group is rebalancing")
          },
          isActive: () => !m.stopped && m.generation === generation,
          commit: (offsets) => this.commit(m, offsets),
        })
      }
      if (!delivered && !m.stopped && m.generation === announced) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            m.wake = undefined
            resolve()
          }, m.options.maxWaitTimeInMs)
          m.wake = () => {
            clearTimeout(t)
            resolve()
          }
        })
      }
    }
  }

  private async commit(m: MemberState, offsets: ReadonlyArray<TopicPartitionOffset>): Promise<void> {
    await Promise.resolve()
    if (m.stopped) throw new Error(`Cannot commit offsets: the member of group "${m.options.groupId}" left`)
    const g = this.group(m.options.groupId)
    for (const o of offsets) g.committed.set(tpKey(o.topic, o.partition), { ...o })
  }

  private consumerGroup(options: ConsumerGroupOptions, handlers: ConsumerGroupHandlers): ConsumerGroup {
    if (options.subscription._tag === "Topics") { for (const t of options.subscription.topics) this.log(t) }
    const m: MemberState = {
      id: this.memberIds++,
      options,
      handlers,
      assigned: [],
      generation: 0,
      positions: new Map(),
      rebalancing: false,
      stopped: false,
      wake: undefined,
    }
    const g = this.group(options.groupId)
    g.members.push(m)
    this.members.add(m)
    this.rebalance(options.groupId)
    const loop = this.runMember(m).catch((e) => {
      if (!m.stopped) handlers.onCrash(e, false)
    })
    return {
      seek: (p) => {
        m.positions.set(tpKey(p.topic, p.partition), p.offset)
      },
      commit: (offsets) => this.commit(m, offsets),
      disconnect: async () => {
        if (m.stopped) return
        m.stopped = true
        this.members.delete(m)
        g.members.splice(g.members.indexOf(m), 1)
        const w = m.wake
        m.wake = undefined
        w?.()
        await loop
        this.rebalance(options.groupId)
      },
    }
  }

  // ---- admin ----

  private admin(): Admin {
    return {
      createTopics: async (specs: ReadonlyArray<TopicSpec>) => {
        await Promise.resolve()
        return specs.filter((s) => this.createTopic(s.topic, s.partitions)).map((s) => s.topic)
      },
      partitionCounts: async (names) => {
        await Promise.resolve()
        const out = new Map<string, number>()
        for (const n of names) {
          const t = this.topics.get(n)
          if (t !== undefined) out.set(n, t.length)
        }
        return out
      },
      watermarks: async (topic) => {
        await Promise.resolve()
        return this.log(topic).map((p, partition) => ({ topic, partition, low: 0, high: p.length }))
      },
      offsetsForTimestamp: async (topic, timestamp) => {
        await Promise.resolve()
        return this.log(topic).map((p, partition) => ({
          topic,
          partition,
          offset: p.find((e) => !e.control && e.record.timestamp >= timestamp)?.record.offset ?? -1,
        }))
      },
      committed: async (groupId, topic) => {
        await Promise.resolve()
        const g = this.groups.get(groupId)
        return this.log(topic).map((_, partition) => ({
          topic,
          partition,
          offset: g?.committed.get(tpKey(topic, partition))?.offset ?? -1,
        }))
      },
      disconnect: async () => {},
    }
  }

  private async *readPartition(
    tp: TopicPartition,
    fromOffset: number,
    isolation: "read_committed" | "read_uncommitted",
  ): AsyncGenerator<ReadonlyArray<RawRecord>> {
    const end = this.endOffset(tp.topic, tp.partition, isolation)
    const chunk = 500
    for (let from = fromOffset; from < end; from += chunk) {
      await Promise.resolve()
      const records = this.visible(tp.topic, tp.partition, from, Math.min(end, from + chunk), isolation)
      if (records.length > 0) yield records
    }
  }

  /** A {@link KafkaClient} on this model. */
  readonly client: KafkaClient = {
    consumerGroup: async (options, handlers) => {
      await Promise.resolve()
      return this.consumerGroup(options, handlers)
    },
    readPartition: (tp, fromOffset, options) =>
      this.readPartition(tp, fromOffset, options?.isolation ?? "read_uncommitted"),
    producer: async (options) => {
      await Promise.resolve()
      return this.producer(options)
    },
    admin: async () => {
      await Promise.resolve()
      return this.admin()
    },
  }
}
