// Checks the committed client documents (`operations/**/*.graphql`) against the committed schema
// (`schema.graphql`) with the reference tools the clients themselves build with:
//
// 1. graphql-js: the schema must be a valid schema, and every document must parse and pass the
//    specification's validation rules (variable types included, which is where a `Date!` variable
//    passed to a `NaiveDate!` argument is refused). Every operation must be named.
// 2. The Relay compiler, over the driver app's documents: what the app compiles with. Relay wants
//    one definition per `graphql` tag and names derived from the module's name, so each document
//    is written into a throwaway module (`<Name>.js`, operations renamed `<Name>Query`,
//    `<Name>Mutation` or `<Name>Subscription`, fragments `<Name>_<fragment>`) and compiled there;
//    the committed documents are not changed.
//
// Usage: node check-documents.mjs [--schema FILE] [--operations DIR] [--no-relay]; by default the
// schema and documents beside this file. Exits non-zero, listing every problem, when the schema or
// a document is invalid.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import {
  GraphQLError,
  Kind,
  Source,
  buildSchema,
  isScalarType,
  parse,
  print,
  validate,
  validateSchema,
  visit,
} from "graphql";

const here = dirname(fileURLToPath(import.meta.url));

/** The value after `flag` on the command line, else `fallback`. */
function option(flag, fallback) {
  const i = process.argv.indexOf(flag);
  return i >= 0 && i + 1 < process.argv.length ? resolve(process.argv[i + 1]) : fallback;
}

const schemaPath = option("--schema", join(here, "schema.graphql"));
const operationsDir = option("--operations", join(here, "operations"));
const withRelay = !process.argv.includes("--no-relay");

/** Every `.graphql` file under `dir`, sorted. */
function graphqlFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...graphqlFiles(path));
    else if (entry.name.endsWith(".graphql")) out.push(path);
  }
  return out.sort();
}

/** `file:line:column: message` for an error of graphql-js. */
function describe(file, error) {
  const at = (error.locations ?? [])[0];
  const where = at ? `${file}:${at.line}:${at.column}` : file;
  return `${where}: ${error.message}`;
}

const problems = [];
const schemaText = readFileSync(schemaPath, "utf8");
let schema;
try {
  schema = buildSchema(new Source(schemaText, schemaPath));
} catch (e) {
  console.error(`${schemaPath} does not build: ${e.message}`);
  process.exit(1);
}
for (const error of validateSchema(schema)) {
  problems.push(describe(schemaPath, error));
}

const files = graphqlFiles(operationsDir);
if (files.length === 0) problems.push(`no documents under ${operationsDir}`);
const parsed = new Map();
for (const path of files) {
  const file = relative(operationsDir, path);
  let document;
  try {
    document = parse(new Source(readFileSync(path, "utf8"), file));
  } catch (e) {
    problems.push(e instanceof GraphQLError ? describe(file, e) : `${file}: ${e.message}`);
    continue;
  }
  parsed.set(path, document);
  for (const def of document.definitions) {
    if (def.kind === Kind.OPERATION_DEFINITION && !def.name) {
      problems.push(`${file}: operations must be named`);
    }
  }
  for (const error of validate(schema, document)) problems.push(describe(file, error));
}
console.log(`graphql-js: ${files.length} documents checked against ${relative(here, schemaPath)}`);

/** The Relay module for one document: its text under Relay's naming rules. */
function relayModule(moduleName, document) {
  const suffix = { query: "Query", mutation: "Mutation", subscription: "Subscription" };
  const fragments = new Map();
  for (const def of document.definitions) {
    if (def.kind === Kind.FRAGMENT_DEFINITION) {
      fragments.set(def.name.value, `${moduleName}_${def.name.value}`);
    }
  }
  const renamed = visit(document, {
    OperationDefinition(node) {
      const name = `${moduleName}${suffix[node.operation]}`;
      return { ...node, name: { kind: Kind.NAME, value: name } };
    },
    FragmentDefinition(node) {
      return { ...node, name: { kind: Kind.NAME, value: fragments.get(node.name.value) } };
    },
    FragmentSpread(node) {
      const name = fragments.get(node.name.value) ?? node.name.value;
      return { ...node, name: { kind: Kind.NAME, value: name } };
    },
  });
  const tags = renamed.definitions.map(
    (def, i) => `export const d${i} = graphql\`\n${print(def)}\n\`;\n`,
  );
  return `import { graphql } from "relay-runtime";\n\n${tags.join("\n")}`;
}

/** Flow types for the schema's own scalars: strings on the wire, but for `JSON`. */
function customScalarTypes() {
  const builtIn = new Set(["String", "Int", "Float", "Boolean", "ID"]);
  const out = {};
  for (const type of Object.values(schema.getTypeMap())) {
    if (isScalarType(type) && !builtIn.has(type.name)) {
      out[type.name] = type.name === "JSON" ? "mixed" : "string";
    }
  }
  return out;
}

function runRelay() {
  const driver = files.filter((f) => relative(operationsDir, f).startsWith("driver/"));
  const work = mkdtempSync(join(tmpdir(), "relay-check-"));
  try {
    mkdirSync(join(work, "src"));
    mkdirSync(join(work, "generated"));
    for (const path of driver) {
      const document = parsed.get(path);
      if (!document) continue;
      const moduleName = path.split("/").pop().replace(/\.graphql$/, "");
      writeFileSync(join(work, "src", `${moduleName}.js`), relayModule(moduleName, document));
    }
    writeFileSync(
      join(work, "relay.config.json"),
      JSON.stringify(
        {
          src: "./src",
          schema: schemaPath,
          language: "javascript",
          artifactDirectory: "./generated",
          customScalarTypes: customScalarTypes(),
          noSourceControl: true,
        },
        null,
        2,
      ),
    );
    const require = createRequire(import.meta.url);
    const cli = require.resolve("relay-compiler/cli.js");
    try {
      const out = execFileSync(process.execPath, [cli, "--output", "quiet-with-errors"], {
        cwd: work,
        encoding: "utf8",
        env: { ...process.env, NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      if (out.trim()) console.log(out.trim());
      console.log(`relay-compiler: ${driver.length} driver documents compiled`);
    } catch (e) {
      const text = `${e.stdout ?? ""}${e.stderr ?? ""}`.trim();
      problems.push(`relay-compiler refused the driver documents:\n${text}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (withRelay) runRelay();

if (problems.length > 0) {
  console.error(`${problems.length} problem(s) in the client documents:`);
  for (const p of problems) console.error(`  ${p}`);
  process.exit(1);
}
console.log("the client documents are valid");
