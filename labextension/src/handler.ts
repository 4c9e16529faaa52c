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

/** `?a=1&b=2` from the values that are set (empty string when none is). */
export function query(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') {
      search.set(key, String(value));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/**
 * Send a request to `<base>/<parts...>` through Jupyter's own connection (base URL, token, XSRF).
 *
 * Answers the response when its status is a success; throws a `LiveMLError` for an error status
 * (with the envelope's `errorName` and message when the answer is liveml's) and
 * `ServerConnection.NetworkError` when the Jupyter server cannot be reached.
 */
export async function request(
  parts: string[],
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<Response> {
  const url = URLExt.join(settings.baseUrl, ...parts);
  const response = await ServerConnection.makeRequest(url, init, settings);
  if (response.ok) {
    return response;
  }
  const text = await response.text();
  let envelope: Partial<ErrorEnvelope> | null = null;
  try {
    envelope = text ? (JSON.parse(text) as Partial<ErrorEnvelope>) : null;
  } catch {
    envelope = null;
  }
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

/** The parsed JSON body of an answer (null when it has none). */
async function json<T>(response: Response): Promise<T> {
  const text = await response.text();
  return (text ? JSON.parse(text) : null) as T;
}

/** Call `<base>/liveml/api/<path>` (the management API); `body` is sent as JSON. */
export async function requestAPI<T>(
  path: string,
  init: RequestInit & { json?: unknown } = {},
  settings?: ServerConnection.ISettings
): Promise<T> {
  const { json: body, ...rest } = init;
  if (body !== undefined) {
    rest.body = JSON.stringify(body);
    rest.headers = { 'Content-Type': 'application/json', ...(rest.headers ?? {}) };
  }
  return json<T>(await request(['liveml', 'api', path], rest, settings));
}

/** POST a query to `<base>/foundry-ml-live/api/inference/transform/<rid>[/v2]`. */
export async function requestInference<T>(
  rid: string,
  body: unknown,
  v2 = false,
  settings?: ServerConnection.ISettings
): Promise<T> {
  const parts = ['foundry-ml-live', 'api', 'inference', 'transform', encodeURIComponent(rid)];
  const init = {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' }
  };
  return json<T>(await request(v2 ? [...parts, 'v2'] : parts, init, settings));
}

/** GET `<base>/liveml/api/<path>` as text (a download). */
export async function requestText(
  path: string,
  settings?: ServerConnection.ISettings
): Promise<string> {
  return (await request(['liveml', 'api', path], {}, settings)).text();
}
