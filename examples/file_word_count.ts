/**
 * Spark's HdfsWordCount: counts words in new text files appearing in a directory.
 *
 *   deno run -A examples/file_word_count.ts [directory]
 *   bun examples/file_word_count.ts [directory]
 *
 * Files are picked up by modification time, each once; dot-files are ignored. Write a file
 * elsewhere and move it in (`mv /tmp/words.txt incoming/`). With no argument the directory
 * `incoming` is created, and a sample file is moved into it a few seconds after start.
 */
import process from "node:process"
import { mkdir, rename, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { Effect } from "effect"
import { Runtime, StreamingContext } from "../mod.ts"
import { sampleText } from "./_sample_server.ts"

const directory = process.argv[2] ?? "incoming"

// Staged as a dot-file (ignored by the stream), then renamed into place in one step.
const dropSampleFile = Effect.promise(async () => {
  const name = `words-${Date.now()}.txt`
  await writeFile(join(directory, `.${name}`), sampleText.join("\n") + "\n")
  await rename(join(directory, `.${name}`), join(directory, name))
})

const program = Effect.gen(function* () {
  yield* Effect.promise(() => mkdir(directory, { recursive: true }))
  yield* Effect.log(`Counting words in new files under ${directory}/`)
  const ssc = yield* StreamingContext.make({ batchInterval: "2 seconds" })
  ssc.textFileStream(directory)
    .flatMap((line) => line.split(" "))
    .filter((word) => word.length > 0)
    .mapToPair((word) => [word, 1])
    .reduceByKey((a, b) => a + b)
    .print()
  yield* ssc.start
  if (process.argv[2] === undefined) yield* Effect.forkChild(Effect.delay(dropSampleFile, "3 seconds"))
  yield* ssc.awaitTermination
})

Runtime.runMain(program)
