/**
 * The Grafana dashboard and the alert rules in k8s/monitoring, checked with Prometheus's own
 * promtool (built from the Go module proxy by test/tools/go-tools.sh) against what a real
 * pod-manager exposes on /metrics after real calls: every expression parses, and names only
 * metrics that the running pod-manager exposes.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { fixture, http, repoRoot, startPodManager } from './harness.js';

const monitoring = join(repoRoot, 'k8s/monitoring');
const dashboard = JSON.parse(readFileSync(join(monitoring, 'dashboard.json'), 'utf8'));
const rulesFile = join(monitoring, 'rules.yml');
const rules = parseYaml(readFileSync(rulesFile, 'utf8'));
/** Series Prometheus makes itself for every target, not the pod-manager. */
const SCRAPE_SERIES = new Set(['up']);

interface Target {
  expr: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Target[];
}
const panels = (dashboard.panels as Panel[]).filter((p) => p.type !== 'row');
const panelExprs = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
const ruleExprs = (rules.groups as Array<{ rules: Array<{ alert: string; expr: string }> }>).flatMap((g) =>
  g.rules.map((r) => ({ rule: r.alert, expr: r.expr })),
);

/** A dashboard expression as Prometheus would receive it from Grafana. */
function asGrafanaSends(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$module', '.*');
}

/** Metric names an expression selects (identifiers followed by a selector, a range or nothing). */
function metricNames(expr: string): string[] {
  const withoutStrings = expr.replace(/"[^"]*"/g, '""');
  const names = withoutStrings.match(/\b(splice_[a-z0-9_]+|up)\b(?!\s*\()/g) ?? [];
  return [...new Set(names)];
}

let promtool: string;
/** The names of the series a real pod-manager exposed, after the calls below. */
let exposed: Set<string>;
let scraped: string;

function run(args: string[], input?: string): { status: number | null; output: string } {
  const r = spawnSync(promtool, args, { input, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

beforeAll(async () => {
  // Built once from the Go module proxy (minutes cold), then cached in ~/.cache.
  promtool = execFileSync('bash', [join(repoRoot, 'test/tools/go-tools.sh'), 'path', 'promtool'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
  await using pm = await startPodManager({
    calc: { package: fixture('calc') },
    broken: { package: fixture('broken') },
  });
  const calc = pm.client.module<any>('calc');
  for (let i = 0; i < 5; i++) await calc.add(i, 1); // a cold start, then calls
  await calc.fail('x').catch(() => {}); // the module throws: REMOTE_ERROR
  await calc.add.constructor('x').catch(() => {}); // refused: PERMISSION_DENIED
  await pm.client
    .module<any>('broken')
    .anything()
    .catch(() => {}); // a failed start
  // A batch job, for the job panels: three inputs in two splits.
  expect(await pm.client.jobs.run({ module: 'calc', fn: 'echo', inputs: [1, 2, 3], split_size: 2 })).toEqual([
    1, 2, 3,
  ]);
  // A placement change: the mode moves calc's calls into the clients.
  expect(
    (await http(`${pm.url}/modules/calc/load`, { method: 'POST', body: { mode: 'local' } })).status,
  ).toBe(200);
  scraped = (await http(`${pm.url}/metrics`)).body;
  exposed = new Set(
    scraped
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('#'))
      .map((line) => line.split(/[{ ]/)[0] as string),
  );
}, 30 * 60_000);

describe('the metrics a pod-manager exposes', () => {
  it('pass promtool check metrics, with no finding', () => {
    const { status, output } = run(['check', 'metrics'], scraped);
    // prom-client's three `*_total` gauges (nodejs_active_{handles,requests,resources}_total) are
    // left out: promtool lints a `_total` gauge, and each is the sum of its per-type gauge.
    expect(output).toBe('');
    expect(status).toBe(0);
    expect(scraped).toMatch(/^splice_pod_manager_nodejs_active_handles\{type="/m);
  });

  it('carry the code of each failed call, failed starts and placement changes', () => {
    expect(scraped).toContain(
      'splice_invocations_total{module="calc",outcome="remote_error",code="REMOTE_ERROR"} 1',
    );
    expect(scraped).toContain(
      'splice_invocations_total{module="calc",outcome="error",code="PERMISSION_DENIED"} 1',
    );
    expect(scraped).toContain(
      'splice_module_start_failures_total{module="broken",code="MODULE_START_FAILED"} 1',
    );
    expect(scraped).toContain('splice_placement_changes_total{module="calc",placement="local"} 1');
  });
});

describe('the Grafana dashboard (k8s/monitoring/dashboard.json)', () => {
  it('names only metrics the running pod-manager exposes, in every panel', () => {
    const unknown = panelExprs.flatMap(({ panel, expr }) =>
      metricNames(expr)
        .filter((name) => !exposed.has(name) && !SCRAPE_SERIES.has(name))
        .map((name) => `${panel}: ${name}`),
    );
    expect(unknown).toEqual([]);
    expect(panelExprs.length).toBeGreaterThanOrEqual(20);
  });

  it("has expressions that Prometheus's parser accepts", () => {
    const dir = mkdtempSync(join(tmpdir(), 'splice-dashboard-'));
    const file = join(dir, 'dashboard-exprs.yml');
    const recorded = panelExprs.map(({ expr }, i) => ({
      record: `dashboard:expr_${i}`,
      expr: asGrafanaSends(expr),
    }));
    writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules: recorded }] }));
    const { status, output } = run(['check', 'rules', file]);
    expect(output).toContain(`${recorded.length} rules found`);
    expect(status).toBe(0);
  });

  it('is importable: a Prometheus datasource variable that every panel and query uses, ids unique, on the grid', () => {
    const variables = dashboard.templating.list as Array<{ name: string; type: string; query: unknown }>;
    expect(variables.find((v) => v.type === 'datasource')).toMatchObject({
      name: 'datasource',
      query: 'prometheus',
    });
    for (const p of panels) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a template literal
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      for (const t of p.targets ?? []) expect(t.datasource, p.title).toEqual(p.datasource);
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
    }
    const ids = (dashboard.panels as Panel[]).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(dashboard.uid).toBe('splice-orc');
  });
});

describe('the alert rules (k8s/monitoring/rules.yml and prometheusrule.yaml)', () => {
  it('pass promtool check rules', () => {
    const { status, output } = run(['check', 'rules', rulesFile]);
    expect(output).toContain('SUCCESS: 4 rules found');
    expect(status).toBe(0);
  });

  it('name only metrics the running pod-manager exposes', () => {
    const unknown = ruleExprs.flatMap(({ rule, expr }) =>
      metricNames(expr)
        .filter((name) => !exposed.has(name) && !SCRAPE_SERIES.has(name))
        .map((name) => `${rule}: ${name}`),
    );
    expect(unknown).toEqual([]);
  });

  it('fire as each alert series file expects (promtool test rules)', () => {
    const tests = readdirSync(join(monitoring, 'tests')).filter((f) => f.endsWith('.test.yml'));
    const alerts = ruleExprs.map((r) => r.rule);
    // One series file per alert, each testing that alert.
    for (const alert of alerts) {
      expect(
        tests.some((f) => readFileSync(join(monitoring, 'tests', f), 'utf8').includes(`alertname: ${alert}`)),
        alert,
      ).toBe(true);
    }
    expect(tests.length).toBe(alerts.length);
    const { status, output } = run(['test', 'rules', ...tests.map((f) => join(monitoring, 'tests', f))]);
    expect(output, output).not.toContain('FAILED');
    expect(status).toBe(0);
  });

  it('are the same groups in the plain rules file and the PrometheusRule', () => {
    const crd = parseYaml(readFileSync(join(monitoring, 'prometheusrule.yaml'), 'utf8'));
    expect(crd).toMatchObject({ apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule' });
    expect(crd.spec.groups).toEqual(rules.groups);
  });
});
