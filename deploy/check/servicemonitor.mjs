// Validate ServiceMonitor objects (a Prometheus Operator CRD, which kubernetes-validate
// has no schema for) against @kubernetes-models/prometheus-operator's schema, offline.
// Usage: node servicemonitor.mjs MODULES_DIR < objects.json   (a JSON array of objects)
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const entry = `${modules}/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js`;
const { ServiceMonitor } = await import(pathToFileURL(entry).href);
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
let checked = 0;
for (const o of objects) {
  if (o.kind !== "ServiceMonitor") continue;
  checked += 1;
  try {
    new ServiceMonitor(o).validate();
    console.log(`ok: ServiceMonitor ${o.metadata.name}`);
  } catch (e) {
    failed += 1;
    console.error(`invalid ServiceMonitor ${o.metadata?.name}: ${e.message}`);
  }
}
if (checked === 0) {
  console.error("no ServiceMonitor found");
  process.exit(1);
}
process.exit(failed ? 1 : 0);
