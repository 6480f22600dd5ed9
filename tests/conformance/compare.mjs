// Reads the conformance suite's results (one checks.json per scenario) for
// each server, directly and through berth, and prints a per-scenario table, the
// summary lines, and every scenario that passes directly but fails through
// berth. Exits 1 if there is any such scenario, 2 if results are missing.
//
// usage: node compare.mjs RESULTS_DIR SERVER...
// with RESULTS_DIR/<server>-direct/ and RESULTS_DIR/<server>-berth/ as written
// by `conformance server -o`.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const [resultsDir, ...servers] = process.argv.slice(2);
if (!resultsDir || servers.length === 0) {
  console.error('usage: node compare.mjs RESULTS_DIR SERVER...');
  process.exit(2);
}

// scenario name -> { pass, checks }. Directories are named
// server-<scenario>-<ISO timestamp>; a scenario passes when none of its checks
// is a FAILURE (WARNING and INFO do not fail it, as in the suite's own summary).
function load(dir) {
  const out = new Map();
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const m = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(name);
    const file = join(dir, name, 'checks.json');
    if (!m || !existsSync(file)) continue;
    const checks = JSON.parse(readFileSync(file, 'utf8'));
    const failed = checks.filter((c) => c.status === 'FAILURE');
    out.set(m[1], { pass: failed.length === 0, checks, failed });
  }
  return out;
}

const count = (runs) => {
  let passed = 0, failed = 0;
  for (const r of runs.values()) r.pass ? passed++ : failed++;
  return { passed, failed };
};
const checkCount = (runs) => {
  let passed = 0, failed = 0;
  for (const r of runs.values())
    for (const c of r.checks)
      if (c.status === 'SUCCESS') passed++;
      else if (c.status === 'FAILURE') failed++;
  return { passed, failed };
};

let missing = false;
const regressions = [];
const totals = { direct: { passed: 0, failed: 0 }, berth: { passed: 0, failed: 0 } };
const lines = [];

for (const server of servers) {
  const direct = load(join(resultsDir, `${server}-direct`));
  const berth = load(join(resultsDir, `${server}-berth`));
  if (direct.size === 0 || berth.size === 0) {
    console.error(`no results for ${server} (direct: ${direct.size} scenarios, berth: ${berth.size})`);
    missing = true;
  }
  const names = [...new Set([...direct.keys(), ...berth.keys()])];
  console.log(`\n## ${server}\n`);
  console.log(`${'scenario'.padEnd(34)} ${'direct'.padEnd(8)} berth`);
  const mark = (r) => (r === undefined ? 'missing' : r.pass ? 'pass' : 'FAIL');
  for (const name of names) {
    const d = direct.get(name), b = berth.get(name);
    const note = d?.pass && !b?.pass ? '   <-- berth only' : !d?.pass && b?.pass ? '   (berth better)' : '';
    console.log(`${name.padEnd(34)} ${mark(d).padEnd(8)} ${mark(b)}${note}`);
    if (d?.pass && !b?.pass) regressions.push({ server, name, berth: b });
  }
  for (const [target, runs] of [['direct', direct], ['berth', berth]]) {
    const s = count(runs), c = checkCount(runs);
    totals[target].passed += s.passed;
    totals[target].failed += s.failed;
    lines.push(`${server} ${target}: ${s.passed} passed, ${s.failed} failed (checks: ${c.passed} passed, ${c.failed} failed)`);
  }
}

if (regressions.length > 0) {
  console.log('\n## Scenarios that pass directly but fail through berth\n');
  for (const { server, name, berth } of regressions) {
    console.log(`- ${server} / ${name}:`);
    if (!berth) {
      console.log('    no result through berth (the scenario did not run or crashed)');
      continue;
    }
    for (const c of berth.failed) {
      console.log(`    ${c.id}: ${c.errorMessage ?? c.description}`);
      if (c.details) console.log(`      details: ${JSON.stringify(c.details).slice(0, 600)}`);
    }
  }
}

console.log('\n## Summary (scenarios; a scenario fails if any of its checks fails)\n');
for (const l of lines) console.log(l);
console.log(`direct: ${totals.direct.passed} passed, ${totals.direct.failed} failed`);
console.log(`berth: ${totals.berth.passed} passed, ${totals.berth.failed} failed`);
if (missing) process.exit(2);
if (regressions.length > 0) {
  console.log(`${regressions.length} scenario(s) fail through berth but pass directly`);
  process.exit(1);
}
