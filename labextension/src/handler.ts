import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { ErrorEnvelope } from './api';

/** An error answer of the liveml REST API, with its envelope's `errorName` and message. */
export class LiveMLError extends Error {
  constructor(
    readonly status: number,
    readonly errorName: string,
    message: string,
    readonly errorCode = '',
    readonly parameters: Record<string, unknown> = {}
  ) {
    super(message);
    this.name = 'LiveMLError';
  }

  /** True when the answer is not liveml's envelope (e.g. Jupyter's 404 page: no liveml there). */
  get isEnvelope(): boolean {
    return this.errorCode !== '';
  }
}

/**
 * Call `<base>/liveml/api/<path>` through Jupyter's own connection (base URL, token, XSRF).
 *
 * Answers the parsed JSON body; throws a `LiveMLError` for an error status and
 * `ServerConnection.NetworkError` when the Jupyter server cannot be reached.
 */
export async function requestAPI<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'liveml', 'api', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    const envelope = body as Partial<ErrorEnvelope> | null;
    if (envelope && typeof envelope.errorName === 'string') {
      const parameters = envelope.parameters ?? { message: '' };
      throw new LiveMLError(
        response.status,
        envelope.errorName,
        String(parameters.message ?? response.statusText),
        envelope.errorCode ?? 'UNKNOWN',
        parameters
      );
    }
    throw new LiveMLError(
      response.status,
      'HTTPError',
      `${response.status} ${response.statusText}`.trim()
    );
  }
  return body as T;
}
