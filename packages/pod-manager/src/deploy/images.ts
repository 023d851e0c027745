/** The images splice-orc builds (docker/Dockerfile), as the config and the CLI default to them. */
export const DEFAULT_IMAGE = 'splice-orc:0.1.0';
/** The Python module-server's image (`docker build --target python`). */
export const DEFAULT_PYTHON_IMAGE = 'splice-orc-python:0.1.0';
