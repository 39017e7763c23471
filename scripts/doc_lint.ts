/**
 * `deno doc --lint` on the package's public entry points (deno.json `exports`): every public
 * symbol has a doc comment and an explicit type, and mentions no type the package keeps private.
 *
 * Two kinds of diagnostics from deno 2.9 are false positives here and are dropped; everything
 * else fails the check:
 *
 * - Diagnostics inside node_modules. deno counts a type from an npm package installed in
 *   node_modules (Effect.Effect, Duration.Input, kafkajs' config types, ...) as a private type,
 *   because to the linter those are local files no entry point exports (denoland/deno#27364;
 *   its fix covers jsr:, npm: and https: modules, not node_modules). So the dependencies' type
 *   declarations are passed as extra roots, which makes their exports public, and their own
 *   documentation gaps, reported at their own files, are not ours.
 * - `private-type-ref` to a type that an entry point exports through a namespace
 *   (`export * as State from "./lib/State.ts"`). A symbol exported both at the top level and in
 *   a namespace (`StateSpec` and `State.StateSpec`) is checked at the top level, where
 *   `State.MappingFunction` does not count as public although users can name it.
 *
 * Usage: node_modules/.bin/deno run --allow-read --allow-run scripts/doc_lint.ts
 *
 * @module
 */
const root = new URL("..", import.meta.url).pathname
const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`)) as { exports: Record<string, string> }
const entries = Object.values(config.exports)

const declarations = async (dir: string): Promise<Array<string>> => {
  const found: Array<string> = []
  for await (const entry of Deno.readDir(`${root}${dir}`)) {
    const path = `${dir}/${entry.name}`
    if (entry.isDirectory) found.push(...await declarations(path))
    else if (entry.name.endsWith(".d.ts")) found.push(path)
  }
  return found.sort()
}
const dependencies = [
  ...await declarations("node_modules/effect/dist"),
  ...await declarations("node_modules/@effect/platform-node/dist"),
  "node_modules/kafkajs/types/index.d.ts",
]

// Names exported by the modules an entry point re-exports as a namespace.
const namespaced = new Set<string>()
for (const entry of entries) {
  const source = await Deno.readTextFile(`${root}${entry}`)
  for (const [, module] of source.matchAll(/^export \* as \w+ from "(\.[^"]+)"/gm)) {
    const text = await Deno.readTextFile(new URL(module!, new URL(entry, `file://${root}`)))
    for (
      const [, name] of text.matchAll(
        /^export (?:declare )?(?:abstract )?(?:interface|type|class|const|function) (\w+)/gm,
      )
    ) {
      namespaced.add(name!)
    }
    // and the names it re-exports: `export { a, type B } from "…"`, `export type { C } from "…"`
    for (const [, list] of text.matchAll(/^export (?:type )?\{([^}]*)\} from "/gm)) {
      for (const item of list!.replace(/\/\*[\s\S]*?\*\//g, "").split(",")) {
        const name = item.trim().replace(/^type\s+/, "").split(/\s+as\s+/).pop()
        if (name) namespaced.add(name)
      }
    }
  }
}

const output = await new Deno.Command(Deno.execPath(), {
  args: ["doc", "--lint", ...entries, ...dependencies],
  cwd: root,
  env: { NO_COLOR: "1" },
  stdout: "piped",
  stderr: "piped",
}).output()
const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr)
if (!output.success && !/^error: Found \d+ documentation lint errors?\./m.test(text)) {
  console.error(text)
  console.error(`deno doc --lint failed without lint diagnostics (exit ${output.code})`)
  Deno.exit(1)
}

// A diagnostic starts with `error[rule]: message`; its first `--> file:line:col` says where.
const blocks = text.split(/^(?=error\[)/m).filter((b) => b.startsWith("error[")).map((b) =>
  b.replace(/^error: Found .*$/m, "").trimEnd()
)
const located = (block: string) => /^\s*--> (\S+)/m.exec(block)?.[1] ?? ""
const referenced = (block: string) => /^error\[private-type-ref\]: .* references private type '(\w+)'/.exec(block)?.[1]
const inDependencies = blocks.filter((block) => located(block).includes("/node_modules/"))
const viaNamespace = blocks.filter((block) =>
  !inDependencies.includes(block) && namespaced.has(referenced(block) ?? "")
)
const ours = blocks.filter((block) => !inDependencies.includes(block) && !viaNamespace.includes(block))
for (const block of ours) console.log(`${block}\n`)
if (ours.length > 0) {
  console.log(`${ours.length} documentation lint error(s) in ${entries.join(", ")}`)
  Deno.exit(1)
}
const dropped = viaNamespace.map((block) => `${referenced(block)} at ${located(block).replace(root, "")}`)
console.log(`deno doc --lint: ${entries.join(", ")} clean`)
console.log(
  `  dropped: ${inDependencies.length} in node_modules; types public through a namespace: ${dropped.join(", ")}`,
)
