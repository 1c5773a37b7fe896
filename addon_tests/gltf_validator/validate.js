// The Khronos glTF-Validator (npm gltf-validator) on each file named on the command line: prints a
// JSON list of {file, validatorVersion, issues} (issues as in the validator's report: numErrors,
// numWarnings, numInfos, numHints, messages). External buffers and images are read from the file's
// folder. Used by addon_tests/test_arkit_blender.py; install with: npm ci --prefix addon_tests/gltf_validator
"use strict";
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

async function validate(file) {
  const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
    uri: path.basename(file),
    maxIssues: 0, // report every issue
    externalResourceFunction: async (uri) =>
      new Uint8Array(fs.readFileSync(path.resolve(path.dirname(file), decodeURIComponent(uri)))),
  });
  return { file, validatorVersion: report.validatorVersion, issues: report.issues };
}

Promise.all(process.argv.slice(2).map(validate))
  .then((reports) => process.stdout.write(JSON.stringify(reports) + "\n"))
  .catch((err) => {
    process.stderr.write(`glTF validator failed: ${err}\n`);
    process.exit(2);
  });
