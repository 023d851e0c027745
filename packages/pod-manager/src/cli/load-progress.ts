/**
 * `splice-orc modules load`: what the module is doing while it installs and starts (phase,
 * elapsed time, the installer's last line), then how long the cold start took. On a terminal a
 * spinner (ora) redraws one line; piped, a plain line is written each time the phase or the
 * installer's line changes, so logs stay readable.
 */
import type { Rest } from '@splice-orc/protocol';
import ora, { type Ora } from 'ora';

/** Where progress goes: the spinner or plain lines, on stderr (stdout keeps the answer). */
export interface ProgressView {
  update(view: Rest.ModuleView | undefined): void;
  succeed(text: string): void;
  fail(text: string): void;
}

/** Seconds since `started`, one decimal. */
export function elapsed(started: number): string {
  return `${((Date.now() - started) / 1000).toFixed(1)} s`;
}

/** The phase and the installer's last line of a module's view. */
function describe(view: Rest.ModuleView | undefined): { phase: string; output: string | undefined } {
  const replica = view?.replicas.find((r) => r.progress !== undefined) ?? view?.replicas[0];
  return { phase: view?.state ?? 'waiting', output: replica?.progress };
}

/**
 * Whether `stream` is a terminal the spinner may redraw: a TTY that reports a width (a pty nobody
 * sized cannot be redrawn in place), not `TERM=dumb`, and not under CI (`CI` set), where logs are
 * read afterwards. ora makes the same call on its own and, when it says no, writes only the first
 * and last lines; deciding here sends those cases to the plain view, which reports every phase.
 */
export function canRedraw(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && (stream.columns ?? 0) > 0 && env.TERM !== 'dumb' && !('CI' in env);
}

/** A progress view for `module` on stderr: a spinner on a terminal, plain lines otherwise. */
export function progressView(module: string, started: number, stream = process.stderr): ProgressView {
  return canRedraw(stream) ? spinnerView(module, started, stream) : plainView(module, started, stream);
}

function spinnerView(module: string, started: number, stream: NodeJS.WriteStream): ProgressView {
  const spinner: Ora = ora({ text: `${module}: waiting`, stream, isEnabled: true }).start();
  let latest: Rest.ModuleView | undefined;
  const render = () => {
    const { phase, output } = describe(latest);
    const line = `${module}: ${phase} (${elapsed(started)})${output ? ` ${output}` : ''}`;
    // One line: a wrapped one would leave copies behind as the spinner redraws.
    spinner.text = line.slice(0, Math.max(20, (stream.columns ?? 80) - 3));
  };
  const timer = setInterval(render, 100);
  return {
    update(view) {
      latest = view ?? latest;
      render();
    },
    succeed(text) {
      clearInterval(timer);
      spinner.succeed(text);
    },
    fail(text) {
      clearInterval(timer);
      spinner.fail(text);
    },
  };
}

function plainView(module: string, started: number, stream: NodeJS.WritableStream): ProgressView {
  let last = '';
  return {
    update(view) {
      const { phase, output } = describe(view);
      const key = `${phase}\0${output ?? ''}`;
      if (view === undefined || key === last) return;
      last = key;
      stream.write(`${module}: ${phase} (${elapsed(started)})${output ? `: ${output}` : ''}\n`);
    },
    succeed(text) {
      stream.write(`${text}\n`);
    },
    fail(text) {
      stream.write(`${text}\n`);
    },
  };
}
