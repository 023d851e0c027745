/**
 * Errors the client throws. Failures of the system (the pod-manager, the network, a refused
 * invocation) are SpliceErrors with a gRPC status name as `code`; an error thrown by the remote
 * module is a RemoteError carrying the remote name, message, code and stack.
 */
import { Code, SpliceError } from '@splice-orc/protocol';

export { Code, SpliceError };

/** An error thrown by the remote module's code. */
export class RemoteError extends SpliceError {
  override name = 'RemoteError';
  /** The remote error's name, e.g. `TypeError` or a module's own error class name. */
  readonly remoteName: string;
  /** The remote error's `code` property, if it had one (e.g. `ENOENT`, `E_CALC`). */
  readonly remoteCode: unknown;
  /** The stack as it was on the module-server. */
  readonly remoteStack: string | undefined;

  constructor(remote: Error, module: string) {
    super(Code.UNKNOWN, `${remote.name} in remote module ${module}: ${remote.message}`, {
      cause: remote,
      details: { module },
    });
    this.remoteName = remote.name;
    this.remoteCode = (remote as { code?: unknown }).code;
    this.remoteStack = remote.stack;
  }
}
