/**
 * Exactly-once Kafka → Kafka: one Kafka transaction per batch of a direct stream, holding every
 * record the batch writes to Kafka and the batch's input offsets (`sendOffsets` for the stream's
 * group), committed once all the batch's outputs succeeded (the input calls {@link
 * BatchTransactions.complete} from `batchCompleted`, instead of committing the offsets itself).
 *
 * **The per-batch transaction hook.** Any writer of a batch enlists in the batch's transaction
 * with `transactions.send(time, partitions, records)` (or `transaction(time, partitions)` for the
 * raw {@link Transaction}): the exactly-once sink does so from its output job, the scale-out
 * stream's sharded state (lib/_internal/repartition.ts) from its changelog append. A writer finds
 * the coordinator on the input node (`transactions`: a direct or scale-out stream), set up by the first
 * exactly-once sink of that stream. Writes made after `complete(time)` fail (the batch's
 * transaction is committing).
 *
 * **Transactional ids.** kafkajs 2.2.4 has no group-metadata fencing (KIP-447: offsets sent with
 * the consumer's generation), so zombies are fenced the older way (Kafka Streams' EOS "alpha"):
 * the transactional id is derived from the member's input partition set, its assignment
 * (`<prefix>|<topic>:<p>,…`), so a member that takes over the same partitions fences the previous
 * owner: at each assignment the input calls {@link BatchTransactions.prepare}, which initialises
 * the producer of the new set (InitProducerId bumps the epoch and aborts what the zombie left
 * open) before the group's committed offsets are read; the zombie's later sends and commit fail.
 * One producer per distinct partition set.
 *
 * **Failures.** A failed write aborts the batch's transaction and poisons the batch: every later
 * write or the commit of that batch fails, so the batch fails (no partial retry inside a batch)
 * and the stream stops; a restart re-reads from the last committed transaction's offsets. A
 * failed commit fails the next batch's first write (and is logged): its records and offsets
 * were aborted, so they are read again after a restart.
 * @internal
 */
import { Data } from "effect"
import {
  type KafkaClient,
  type OutgoingRecord,
  type Producer,
  type TopicPartition,
  type TopicPartitionOffset,
  tpKey,
  type Transaction,
  type WriteResult,
} from "./kafkaClient.ts"
import type { TaggedErrorClass } from "./taggedError.ts"

/** What the coordinator needs of its input stream. @internal */
export interface TransactionalInputInfo {
  readonly client: KafkaClient
  readonly groupId: string
  /** Prefix of the transactional ids (default: the group id). */
  readonly transactionalIdPrefix: string
  /** Where warnings go (the input's log). */
  readonly warn: (message: string) => void
}

interface BatchTx {
  readonly time: number
  readonly transactionalId: string
  readonly tx: Promise<Transaction>
  /** The failure that poisoned the batch (a failed write or abort). */
  failure: unknown
  completed: boolean
  /** Ends the batch (committed, aborted or never begun): the next batch's transaction may begin. */
  readonly end: () => void
}

/** Builds a transactional id from a prefix and a partition set (sorted; stable across batches). @internal */
export const transactionalIdFor = (prefix: string, partitions: ReadonlyArray<TopicPartition>): string => {
  const byTopic = new Map<string, Array<number>>()
  for (const p of partitions) {
    let ps = byTopic.get(p.topic)
    if (ps === undefined) byTopic.set(p.topic, ps = [])
    if (!ps.includes(p.partition)) ps.push(p.partition)
  }
  const parts = [...byTopic].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([topic, ps]) => `${topic}:${ps.sort((a, b) => a - b).join(",")}`)
  return `${prefix}|${parts.join("|")}`
}

/** @internal */
export const KafkaTransactionErrorBase: TaggedErrorClass<"KafkaTransactionError", {
  /** The batch whose transaction can no longer commit. */
  readonly batchTime: number
  /** Why. */
  readonly reason: string
  /** The client's error, when one caused it. */
  readonly cause: unknown
}> = Data.TaggedError("KafkaTransactionError")

/**
 * A write of an exactly-once batch failed, or the batch's transaction was aborted, fenced or
 * failed to commit: the batch fails (and the context stops) instead of writing partially.
 * @internal
 */
export class KafkaTransactionError extends KafkaTransactionErrorBase {
  override get message(): string {
    return `Cannot write batch ${this.batchTime} exactly once: ${this.reason}`
  }
}

const txError = (batchTime: number, reason: string, cause?: unknown) =>
  new KafkaTransactionError({ batchTime, reason, cause })

const messageOf = (e: unknown): string => e instanceof Error ? e.message : String(e)

/** The per-batch transactions of one direct stream. @internal */
export class BatchTransactions {
  private readonly producers = new Map<string, Promise<Producer>>()
  private readonly batches = new Map<number, BatchTx>()
  /** Batches whose transaction was aborted, with the reason (they can no longer write or commit). */
  private readonly poisoned = new Map<number, unknown>()
  /** The previous batch's commit (a batch's transaction starts after it). */
  private chain: Promise<void> = Promise.resolve()
  /** A commit that failed: the next write fails with it. */
  private commitFailure: { readonly time: number; readonly error: unknown } | undefined = undefined
  /** Committed transactions, and the offsets they committed (for tests and monitoring). */
  readonly committed = new Map<string, TopicPartitionOffset>()
  commits = 0
  aborts = 0

  constructor(readonly info: TransactionalInputInfo) {}

  private producer(transactionalId: string): Promise<Producer> {
    let p = this.producers.get(transactionalId)
    if (p === undefined) {
      p = this.info.client.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1, acks: -1 })
      this.producers.set(transactionalId, p)
      p.catch(() => this.producers.delete(transactionalId))
    }
    return p
  }

  /**
   * The open transaction of batch `time` over the batch's input `partitions`, begun on first use
   * once the previous batch's transaction has ended. Fails when the batch is poisoned, already
   * completed, or the previous commit failed.
   */
  transaction(time: number, partitions: ReadonlyArray<TopicPartition>): Promise<Transaction> {
    const poisoned = this.poisoned.get(time)
    if (this.poisoned.has(time)) {
      return Promise.reject(
        txError(time, `its transaction was aborted: ${messageOf(poisoned)}`, poisoned),
      )
    }
    const b = this.batch(time, partitions)
    if (b.completed) {
      return Promise.reject(txError(time, "the batch's transaction is already committing"))
    }
    if (b.failure !== undefined) {
      return Promise.reject(
        txError(time, `its transaction was aborted: ${messageOf(b.failure)}`, b.failure),
      )
    }
    return b.tx
  }

  private batch(time: number, partitions: ReadonlyArray<TopicPartition>): BatchTx {
    let b = this.batches.get(time)
    if (b === undefined) {
      const transactionalId = transactionalIdFor(this.info.transactionalIdPrefix, partitions)
      const previous = this.chain
      const tx = previous.then(() => {
        const failed = this.commitFailure
        if (failed !== undefined) {
          throw txError(
            time,
            `the transaction of batch ${failed.time} failed to commit: ${messageOf(failed.error)}`,
            failed.error,
          )
        }
        return this.producer(transactionalId).then((p) => p.transaction())
      })
      let end: () => void = () => {}
      const ended = new Promise<void>((resolve) => (end = resolve))
      const batch: BatchTx = {
        time,
        transactionalId,
        tx,
        failure: undefined,
        completed: false,
        end: () => {
          if (this.batches.get(time) === batch) this.batches.delete(time)
          if (batch.failure !== undefined && !batch.completed) this.poisoned.set(time, batch.failure)
          end()
        },
      }
      b = batch
      this.batches.set(time, batch)
      tx.catch((e) => {
        if (batch.failure === undefined) batch.failure = e
        batch.end()
      })
      // the next batch's transaction begins after this one ends
      this.chain = ended
    }
    return b
  }

  /** Writes `records` in batch `time`'s transaction; a failure aborts and poisons the batch. */
  async send(
    time: number,
    partitions: ReadonlyArray<TopicPartition>,
    records: ReadonlyArray<OutgoingRecord>,
  ): Promise<ReadonlyArray<WriteResult>> {
    const tx = await this.transaction(time, partitions)
    try {
      return await tx.send(records)
    } catch (e) {
      await this.abort(time, e)
      throw txError(time, `a write failed, its transaction is aborted: ${messageOf(e)}`, e)
    }
  }

  /** Aborts batch `time`'s transaction (a writer failed): the batch can no longer commit. */
  async abort(time: number, reason: unknown): Promise<void> {
    const b = this.batches.get(time)
    if (b === undefined || b.completed) return
    const first = b.failure === undefined
    if (first) b.failure = reason
    if (!first) return
    try {
      const tx = await b.tx
      await tx.abort()
      this.aborts++
    } catch (e) {
      this.info.warn(`aborting the transaction of batch ${time} failed: ${messageOf(e)}`)
    } finally {
      b.end()
    }
  }

  /**
   * Every output of batch `time` succeeded: commits its transaction with `offsets` (the next
   * offset to read per input partition) sent for the group. Runs in the background, in batch
   * order; a failure is kept for the next write. A poisoned batch is not committed.
   */
  complete(
    time: number,
    partitions: ReadonlyArray<TopicPartition>,
    offsets: ReadonlyArray<TopicPartitionOffset>,
    onCommitted?: (offsets: ReadonlyArray<TopicPartitionOffset>) => void,
  ): void {
    if (this.poisoned.delete(time)) return
    const advanced = offsets.filter((o) => (this.committed.get(tpKey(o.topic, o.partition))?.offset ?? -1) < o.offset)
    let b = this.batches.get(time)
    if (b === undefined) {
      if (advanced.length === 0) return
      // no writer enlisted (an empty batch with offsets to move): a transaction of offsets only
      b = this.batch(time, partitions)
    }
    if (b.failure !== undefined || b.completed) return
    b.completed = true
    const batch = b
    const run = async () => {
      try {
        const tx = await batch.tx
        if (advanced.length > 0) await tx.sendOffsets(this.info.groupId, advanced)
        await tx.commit()
        this.commits++
        for (const o of advanced) this.committed.set(tpKey(o.topic, o.partition), o)
        onCommitted?.(advanced)
      } catch (e) {
        this.commitFailure = { time, error: e }
        this.info.warn(
          `the transaction of batch ${time} failed to commit (its records and offsets are aborted): ${messageOf(e)}`,
        )
        try {
          await (await batch.tx).abort()
        } catch {
          // a fenced or failed producer cannot abort; the broker aborts on the next InitProducerId or timeout
        }
      } finally {
        batch.end()
      }
    }
    void run()
  }

  /**
   * A new assignment: fences the previous owner of this partition set first (its producer with
   * the same transactional id is initialised: the broker aborts what the zombie left open and
   * rejects its later sends and commits), then reads the group's committed offsets, so that no
   * commit of the zombie can land after them. Resolves to where the assigned partitions start
   * (partitions without a committed offset are left out).
   */
  async prepare(assigned: ReadonlyArray<TopicPartition>): Promise<ReadonlyArray<TopicPartitionOffset>> {
    if (assigned.length === 0) return []
    await this.chain
    await this.producer(transactionalIdFor(this.info.transactionalIdPrefix, assigned))
    const admin = await this.info.client.admin()
    try {
      const wanted = new Set(assigned.map((p) => tpKey(p.topic, p.partition)))
      const out: Array<TopicPartitionOffset> = []
      for (const topic of new Set(assigned.map((p) => p.topic))) {
        for (const c of await admin.committed(this.info.groupId, topic)) {
          if (c.offset >= 0 && wanted.has(`${c.topic}\u0000${c.partition}`)) out.push(c)
        }
      }
      return out
    } finally {
      await admin.disconnect().catch(() => undefined)
    }
  }

  /** Waits for the last transaction to end, then disconnects the producers. */
  async close(): Promise<void> {
    for (const b of [...this.batches.values()]) {
      if (!b.completed) await this.abort(b.time, new Error("the stream stopped before the batch completed"))
    }
    await this.chain
    const ps = [...this.producers.values()]
    this.producers.clear()
    for (const p of ps) {
      try {
        await (await p).disconnect()
      } catch {
        // already gone
      }
    }
  }

  /** Resolves once every begun transaction has ended (committed or aborted). */
  idle(): Promise<void> {
    return this.chain
  }
}
