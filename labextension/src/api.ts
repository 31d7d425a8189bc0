/**
 * The mlmagics server extension's REST API (mlmagics/server), typed.
 * Every call goes through ServerConnection, so it carries the Jupyter token/XSRF like any Lab request.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IModel {
  id: string;
  name: string;
  version: number;
  description: string | null;
  tags: Record<string, string>;
  createdTime: string;
  size: number;
  images: string[];
  createdByText: string; // 'ana@ana-laptop (train.ipynb)': who registered it, from where
}

export interface IImage {
  id: string;
  name: string;
  version: number;
  creationState: string;
  createdTime: string;
  modelIds: string[];
  services: string[];
  createdByText: string;
}

export interface IKeys {
  primary: string;
  secondary: string;
}

export interface IService {
  name: string;
  state: string;
  computeType: string;
  runsOn: string; // 'local target of host-a (pid 4242)', 'Docker', ...
  createdByText: string;
  imageId: string;
  scoringUri: string | null;
  swaggerUri: string | null;
  authEnabled: boolean;
  /** Masked (e.g. `abcd••••••••wxyz`); `DeploymentsAPI.keys` returns the real ones. */
  keys: IKeys | null;
  error: string | null;
  updatedTime: string;
}

export interface IDeployments {
  workspace: string;
  models: IModel[];
  images: IImage[];
  services: IService[];
}

export interface ITestAnswer {
  name: string;
  status: number;
  latencyMs: number;
  answer: unknown;
}

/** A failed API call; `message` is the server's own sentence (the core's refusal, for instance). */
export class APIError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

export class DeploymentsAPI {
  constructor(readonly serverSettings: ServerConnection.ISettings) {}

  deployments(): Promise<IDeployments> {
    return this._request<IDeployments>(['deployments']);
  }

  async logs(name: string, lines = 20): Promise<string[]> {
    const answer = await this._request<{ lines: string[] }>(
      ['services', name, 'logs'],
      {},
      `?lines=${lines}`
    );
    return answer.lines;
  }

  keys(name: string): Promise<IKeys> {
    return this._request<IKeys>(['services', name, 'keys']);
  }

  test(name: string, body: string): Promise<ITestAnswer> {
    return this._request<ITestAnswer>(['services', name, 'test'], {
      method: 'POST',
      body
    });
  }

  /** Delete a service, an image (`name:version`) or a model (`name:version`); resolves to the server's message. */
  async remove(
    kind: 'services' | 'images' | 'models',
    id: string
  ): Promise<string> {
    const answer = await this._request<{ message: string }>([kind, id], {
      method: 'DELETE'
    });
    return answer.message;
  }

  private async _request<T>(
    parts: string[],
    init: RequestInit = {},
    query = ''
  ): Promise<T> {
    const url =
      URLExt.join(
        this.serverSettings.baseUrl,
        'mlmagics',
        ...parts.map(encodeURIComponent)
      ) + query;
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        url,
        init,
        this.serverSettings
      );
    } catch (error) {
      throw new APIError(
        `cannot reach the Jupyter server (${String(error)})`,
        0
      );
    }
    const text = await response.text();
    let data: unknown = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message = (data as { message?: string } | null)?.message;
      throw new APIError(
        message || `${response.status} ${response.statusText} from ${url}`,
        response.status
      );
    }
    return data as T;
  }
}
