/**
 * The module structure stays layered: the relative imports of `mod.ts`, `lib/` and `receivers/`
 * (every form: `import`, `import type`, `export … from`, dynamic `import()`, `import("…")` types)
 * form no cycle, `lib/_internal/` imports nothing from `receivers/`, and `@effect/platform-node`
 * appears only in the runtime file, `lib/Runtime.ts` (not in the rest of `lib/`, nor in
 * `receivers/` or `mod.ts`). The engine talks to Kafka through the client interface
 * (lib/_internal/kafkaClient.ts) only: `kafkajs` is loaded by `receivers/kafkajs_client.ts`
 * alone, and named elsewhere only in `import type` of the public option types (`lib/Kafka.ts`,
 * `receivers/kafka.ts`: TLS, SASL, retry, producer settings). Imports are read with the
 * TypeScript parser, so comments and strings that look like imports do not count.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript"

/** The one module that may load kafkajs, and the modules whose option types may name its types. */
const kafkajsClientFile = "receivers/kafkajs_client.ts"
const kafkajsOptionTypeFiles: ReadonlySet<string> = new Set(["lib/Kafka.ts", "receivers/kafka.ts"])

const root = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), "..")
const runtimeFile = "lib/Runtime.ts"

/** Every `.ts` file under `dir` (relative to the repository root, `/`-separated). */
const sources = (dir: string): Array<string> =>
  fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const rel = `${dir}/${entry.name}`
    if (entry.isDirectory()) return sources(rel)
    return entry.isFile() && entry.name.endsWith(".ts") ? [rel] : []
  })

/** Every module specifier `file` imports or re-exports, in any form. */
export const specifiersOf = (fileName: string, text: string): Array<string> => {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  const found: Array<string> = []
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined &&
      ts.isStringLiteralLike(node.moduleSpecifier)
    ) {
      found.push(node.moduleSpecifier.text)
    } else if (
      ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0])
    ) {
      found.push(node.arguments[0].text)
    } else if (
      ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)
    ) {
      found.push(node.argument.literal.text)
    } else if (
      ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) &&
      ts.isStringLiteralLike(node.moduleReference.expression)
    ) {
      found.push(node.moduleReference.expression.text)
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

/** Whether each import of package `pkg` in `file` is type-only (`import type`, `export type`, `import("…")` types). */
export const packageImportsOf = (
  fileName: string,
  text: string,
  pkg: string,
): Array<{ readonly typeOnly: boolean }> => {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  const found: Array<{ typeOnly: boolean }> = []
  const matches = (spec: string) => spec === pkg || spec.startsWith(`${pkg}/`)
  const visit = (node: ts.Node): void => {
    if (
      ts.isImportDeclaration(node) && ts.isStringLiteralLike(node.moduleSpecifier) && matches(node.moduleSpecifier.text)
    ) {
      found.push({ typeOnly: node.importClause?.isTypeOnly === true })
    } else if (
      ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined &&
      ts.isStringLiteralLike(node.moduleSpecifier) && matches(node.moduleSpecifier.text)
    ) {
      found.push({ typeOnly: node.isTypeOnly })
    } else if (
      ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0]) && matches(node.arguments[0].text)
    ) {
      found.push({ typeOnly: false })
    } else if (
      ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal) &&
      matches(node.argument.literal.text)
    ) {
      found.push({ typeOnly: true })
    } else if (
      ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) &&
      ts.isStringLiteralLike(node.moduleReference.expression) && matches(node.moduleReference.expression.text)
    ) {
      found.push({ typeOnly: node.isTypeOnly })
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

interface Graph {
  /** file → the files it imports (relative imports resolved, repository-relative). */
  readonly edges: ReadonlyMap<string, ReadonlySet<string>>
  /** file → its bare (package) specifiers. */
  readonly packages: ReadonlyMap<string, ReadonlySet<string>>
}

const readGraph = (files: Record<string, string>): Graph => {
  const edges = new Map<string, Set<string>>()
  const packages = new Map<string, Set<string>>()
  for (const [file, text] of Object.entries(files)) {
    const local = new Set<string>()
    const bare = new Set<string>()
    for (const spec of specifiersOf(file, text)) {
      if (spec.startsWith(".")) local.add(path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)))
      else bare.add(spec)
    }
    edges.set(file, local)
    packages.set(file, bare)
  }
  return { edges, packages }
}

/** The import cycles of the graph: its strongly connected components of more than one file (Tarjan). */
const cyclesOf = (edges: ReadonlyMap<string, ReadonlySet<string>>): Array<Array<string>> => {
  let counter = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const onStack = new Set<string>()
  const components: Array<Array<string>> = []
  const connect = (v: string): void => {
    index.set(v, counter)
    low.set(v, counter)
    counter++
    stack.push(v)
    onStack.add(v)
    for (const w of edges.get(v) ?? []) {
      if (!edges.has(w)) continue
      if (!index.has(w)) {
        connect(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) === index.get(v)) {
      const component: Array<string> = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        component.push(w)
      } while (w !== v)
      if (component.length > 1) components.push(component.sort())
    }
  }
  for (const v of [...edges.keys()].sort()) if (!index.has(v)) connect(v)
  return components
}

/** Every rule the layering keeps, as a list of violations (empty when the tree is layered). */
export const violations = (files: Record<string, string>): Array<string> => {
  const { edges, packages } = readGraph(files)
  const found: Array<string> = []
  for (const [a, targets] of edges) {
    for (const b of targets) {
      if (a < b && edges.get(b)?.has(a)) found.push(`mutual imports: "${a}" ↔ "${b}"`)
      if (a.startsWith("lib/_internal/") && b.startsWith("receivers/")) {
        found.push(`lib/_internal imports receivers/: "${a}" → "${b}"`)
      }
    }
  }
  for (const component of cyclesOf(edges)) found.push(`import cycle: ${component.map((f) => `"${f}"`).join(", ")}`)
  for (const [file, text] of Object.entries(files)) {
    if (file === kafkajsClientFile) continue
    for (const { typeOnly } of packageImportsOf(file, text, "kafkajs")) {
      if (typeOnly && kafkajsOptionTypeFiles.has(file)) continue
      found.push(
        typeOnly
          ? `"${file}" names kafkajs types: only "${kafkajsClientFile}" and the option types may`
          : `"${file}" loads kafkajs: only "${kafkajsClientFile}" may (the engine uses lib/_internal/kafkaClient.ts)`,
      )
    }
  }
  for (const [file, bare] of packages) {
    if (file === runtimeFile) continue
    for (const spec of bare) {
      if (spec === "@effect/platform-node" || spec.startsWith("@effect/platform-node/")) {
        found.push(`"${file}" imports "${spec}": only "${runtimeFile}" may use the platform`)
      }
    }
  }
  return found
}

const tree = (): Record<string, string> =>
  Object.fromEntries(
    ["mod.ts", ...sources("lib"), ...sources("receivers")].map((f) => [f, fs.readFileSync(path.join(root, f), "utf8")]),
  )

describe("module layering", () => {
  it("mod.ts, lib/ and receivers/ have no import cycle, lib/_internal never imports receivers/, only lib/Runtime.ts uses the platform, only the kafkajs client loads kafkajs", () => {
    assert.deepEqual(violations(tree()), [])
  })

  it("the check finds every kind of import, a mutual pair, a longer cycle, _internal → receivers and the platform", () => {
    const found = violations({
      "mod.ts": `export * as A from "./lib/A.ts"`,
      "lib/A.ts": `/** import { x } from "./C.ts" */ const s = "import './C.ts'"\nimport type { B } from "./B.ts"`,
      "lib/B.ts": `export { a } from "./A.ts"`,
      "lib/C.ts": `const d = await import("./_internal/d.ts")`,
      "lib/_internal/d.ts": `type T = import("../E.ts").T\nimport "../../receivers/r.ts"`,
      "lib/E.ts": `import * as C from "./C.ts"`,
      "lib/F.ts": `import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"`,
      "lib/Runtime.ts": `import * as NodeRuntime from "@effect/platform-node/NodeRuntime"`,
      "receivers/r.ts":
        `import { x } from "../lib/F.ts"\nimport * as NodeSocket from "@effect/platform-node/NodeSocket"`,
      "receivers/kafkajs_client.ts": `import kafkajs from "kafkajs"`,
      "receivers/kafka.ts": `import type * as KafkaJS from "kafkajs"\nconst k = await import("kafkajs")`,
      "lib/Kafka.ts": `import type { ProducerConfig } from "kafkajs"`,
      "lib/_internal/ui/lag.ts": `import type { Admin } from "kafkajs"\ntype T = import("kafkajs").Admin`,
      "lib/G.ts": `import { Kafka } from "kafkajs"\nexport { logLevel } from "kafkajs"`,
    })
    assert.deepEqual(found.sort(), [
      `"lib/F.ts" imports "@effect/platform-node/NodeFileSystem": only "lib/Runtime.ts" may use the platform`,
      `"lib/G.ts" loads kafkajs: only "receivers/kafkajs_client.ts" may (the engine uses lib/_internal/kafkaClient.ts)`,
      `"lib/G.ts" loads kafkajs: only "receivers/kafkajs_client.ts" may (the engine uses lib/_internal/kafkaClient.ts)`,
      `"lib/_internal/ui/lag.ts" names kafkajs types: only "receivers/kafkajs_client.ts" and the option types may`,
      `"lib/_internal/ui/lag.ts" names kafkajs types: only "receivers/kafkajs_client.ts" and the option types may`,
      `"receivers/kafka.ts" loads kafkajs: only "receivers/kafkajs_client.ts" may (the engine uses lib/_internal/kafkaClient.ts)`,
      `"receivers/r.ts" imports "@effect/platform-node/NodeSocket": only "lib/Runtime.ts" may use the platform`,
      `import cycle: "lib/A.ts", "lib/B.ts"`,
      `import cycle: "lib/C.ts", "lib/E.ts", "lib/_internal/d.ts"`,
      `lib/_internal imports receivers/: "lib/_internal/d.ts" → "receivers/r.ts"`,
      `mutual imports: "lib/A.ts" ↔ "lib/B.ts"`,
    ])
  })
})
