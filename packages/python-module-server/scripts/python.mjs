#!/usr/bin/env node
/**
 * Runs this Python package's tools for pnpm and turbo: `node scripts/python.mjs test|lint|format|bench|env`.
 *
 * It makes, once per pyproject.toml and Python version, a virtual environment under
 * ~/.cache/splice-orc-tools (python3 -m venv, then `pip install -e '.[dev]'`, or uv when it is on
 * PATH), and runs pytest, ruff or the benchmark in it with this checkout's `src/` first on
 * PYTHONPATH (the environment is shared by checkouts; its editable install may point at another).
 * `test` ends with a line in vitest's format (`Tests  N passed (N)`), which the CI tally counts.
 * Needs python3 (3.10+) and PyPI; PYTHON names another interpreter.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));
const python = process.env.PYTHON || 'python3';

/** The environment's folder, made if needed. */
function environment() {
  const version = run(python, ['-c', 'import sys; print(sys.version)'], { capture: true }).trim();
  const hash = createHash('sha256')
    .update(readFileSync(join(packageDir, 'pyproject.toml')))
    .update(version)
    .digest('hex')
    .slice(0, 12);
  const cache = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'splice-orc-tools');
  const venv = join(cache, `python-module-server-${hash}`);
  if (existsSync(join(venv, '.installed'))) return venv;
  mkdirSync(cache, { recursive: true });
  // Made beside its final place and renamed into it: two runs at once never see a half-made one.
  const building = `${venv}.building-${process.pid}`;
  console.error(`making the Python environment ${venv} (once per pyproject.toml)`);
  run(python, ['-m', 'venv', '--clear', building]);
  const venvPython = join(building, 'bin', 'python');
  const uv = spawnSync('uv', ['--version'], { stdio: 'ignore' }).status === 0;
  if (uv)
    run('uv', ['pip', 'install', '--python', venvPython, '--quiet', '-e', '.[dev]'], { cwd: packageDir });
  else {
    run(venvPython, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-e', '.[dev]'], {
      cwd: packageDir,
    });
  }
  writeFileSync(join(building, '.installed'), `${new Date().toISOString()}\n`);
  try {
    renameSync(building, venv);
  } catch {
    rmSync(building, { recursive: true, force: true }); // another run finished first
  }
  return venv;
}

/** Runs a command to its end; throws when it fails. */
function run(command, args, { cwd = packageDir, capture = false } = {}) {
  const result = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit',
  });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status}`);
  return result.stdout ?? '';
}

/** Runs a Python module of the environment; resolves with its exit code and what it printed. */
function runModule(venv, args) {
  const env = {
    ...process.env,
    PYTHONPATH: [join(packageDir, 'src'), process.env.PYTHONPATH].filter(Boolean).join(delimiter),
    PYTHONDONTWRITEBYTECODE: '1',
  };
  return new Promise((resolve, reject) => {
    const child = spawn(join(venv, 'bin', 'python'), args, {
      cwd: packageDir,
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      output += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
  });
}

/** pytest's closing counts as the line vitest prints, e.g. `      Tests  2 failed | 688 passed (690)`. */
function tally(output) {
  const summary =
    output
      .trim()
      .split('\n')
      .reverse()
      .find((line) => /\d+ (passed|failed|error)/.test(line)) ?? '';
  const count = (word) => Number(summary.match(new RegExp(`(\\d+) ${word}`))?.[1] ?? 0);
  const failed = count('failed') + count('errors?');
  const passed = count('passed');
  const skipped = count('skipped');
  const parts = [failed && `${failed} failed`, `${passed} passed`, skipped && `${skipped} skipped`].filter(
    Boolean,
  );
  return { line: `      Tests  ${parts.join(' | ')} (${failed + passed + skipped})`, passed, failed };
}

const commands = {
  async test(venv, args) {
    const { code, output } = await runModule(venv, ['-m', 'pytest', '-q', ...args]);
    const { line, passed } = tally(output);
    console.log(`\n${line}`);
    return code === 0 && passed === 0 ? 1 : code;
  },
  async lint(venv) {
    const check = await runModule(venv, ['-m', 'ruff', 'check', '.']);
    const format = await runModule(venv, ['-m', 'ruff', 'format', '--check', '.']);
    return check.code || format.code;
  },
  async format(venv) {
    const format = await runModule(venv, ['-m', 'ruff', 'format', '.']);
    const check = await runModule(venv, ['-m', 'ruff', 'check', '--fix', '.']);
    return format.code || check.code;
  },
  async bench(venv, args) {
    return (await runModule(venv, ['scripts/bench.py', ...args])).code;
  },
  /** Prints the environment's folder (tests outside this package run servers with its Python). */
  async env(venv) {
    console.log(venv);
    return 0;
  },
};

const [name = 'test', ...args] = process.argv.slice(2);
const command = commands[name];
if (!command) {
  console.error(`usage: node scripts/python.mjs ${Object.keys(commands).join('|')} [arguments]`);
  process.exit(2);
}
process.exitCode = await command(environment(), args);
