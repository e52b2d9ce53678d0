// Validates Kubernetes objects against the Kubernetes API schema, offline.
//
// Input: a JSON file of [{"file": NAME, "object": OBJECT}, ...] (check_kubernetes.py --json-out
// writes it from deploy/kubernetes). Each object is checked with the JSON schema of its apiVersion
// and kind from the npm package kubernetes-models (generated from the Kubernetes OpenAPI
// definitions, compiled into the package: no network). It checks types, required fields, enums
// and formats; unknown fields are not reported (the schemas allow them), which
// check_kubernetes.py's structural checks partly make up for.
//
// Usage: node tests/deploy/k8s_schema.cjs OBJECTS.json
// Prints one line per object and exits 1 if any is invalid. Installed by scripts/setup
// (npm ci in tests/deploy).
"use strict";

const fs = require("fs");

// apiVersion "v1" lives in kubernetes-models/v1, "apps/v1" in kubernetes-models/apps/v1.
function modelFor(apiVersion, kind) {
  let group;
  try {
    group = require(`kubernetes-models/${apiVersion}`);
  } catch (error) {
    return null;
  }
  return group[kind] || null;
}

function main() {
  if (process.argv.length !== 3) {
    console.error("usage: node k8s_schema.cjs OBJECTS.json");
    process.exit(2);
  }
  const entries = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  let failed = 0;
  for (const { file, object } of entries) {
    const name = `${file} ${object.kind}/${object.metadata && object.metadata.name}`;
    const Model = modelFor(object.apiVersion, object.kind);
    if (Model === null) {
      console.log(`FAIL: ${name}: no schema for ${object.apiVersion} ${object.kind}`);
      failed++;
      continue;
    }
    try {
      new Model(object).validate();
      console.log(`ok: ${name}`);
    } catch (error) {
      console.log(`FAIL: ${name}: ${error.message}`);
      failed++;
    }
  }
  console.log(`kubernetes schema: ${entries.length - failed} of ${entries.length} objects valid`);
  process.exit(failed > 0 ? 1 : 0);
}

main();
