/** Types of python-index.mjs. */

/** The folder of downloaded wheels (python-wheels.txt), filled if needed. */
export function wheelhouse(): Promise<string>;

/** A PEP 503 index of the wheels in a folder, on 127.0.0.1; `url` ends in `/simple/`. */
export interface PackageIndex {
  url: string;
  close(): Promise<void>;
}

/** Serves the wheels of `dir` as a simple index on a free loopback port. */
export function servePackageIndex(dir: string): Promise<PackageIndex>;
