/**
 * The Test dialog: a JSON body, Send, and the service's answer with the round-trip latency.
 * It stays open so the body can be changed and sent again.
 */
import { Dialog, ReactWidget } from '@jupyterlab/apputils';
import * as React from 'react';

import { DeploymentsAPI, ITestAnswer } from './api';

const DEFAULT_BODY = '{"data": []}';
const lastBodies = new Map<string, string>();

type Outcome =
  | { kind: 'answer'; answer: ITestAnswer }
  | { kind: 'error'; message: string }
  | null;

function TestForm(props: {
  api: DeploymentsAPI;
  service: string;
}): JSX.Element {
  const [body, setBody] = React.useState(
    lastBodies.get(props.service) ?? DEFAULT_BODY
  );
  const [busy, setBusy] = React.useState(false);
  const [outcome, setOutcome] = React.useState<Outcome>(null);

  const send = async (): Promise<void> => {
    try {
      JSON.parse(body);
    } catch (error) {
      setOutcome({
        kind: 'error',
        message: `The body is not valid JSON: ${(error as Error).message}`
      });
      return;
    }
    lastBodies.set(props.service, body);
    setBusy(true);
    try {
      setOutcome({
        kind: 'answer',
        answer: await props.api.test(props.service, body)
      });
    } catch (error) {
      setOutcome({ kind: 'error', message: (error as Error).message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="jp-mlmagics-test">
      <label className="jp-mlmagics-test-label" htmlFor="jp-mlmagics-test-body">
        Request body (JSON), POSTed to the scoring URI
      </label>
      <textarea
        id="jp-mlmagics-test-body"
        className="jp-mlmagics-test-body jp-mod-styled"
        rows={6}
        spellCheck={false}
        value={body}
        onChange={event => setBody(event.target.value)}
        onKeyDown={event => {
          // Enter alone edits the body (the dialog leaves Enter in a textarea alone)
          if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
            void send();
          }
        }}
      />
      <div className="jp-mlmagics-test-actions">
        <button
          className="jp-mlmagics-send jp-mod-styled jp-mod-accept"
          disabled={busy}
          onClick={() => void send()}
        >
          {busy ? 'Sending…' : 'Send'}
        </button>
        <span className="jp-mlmagics-muted">Ctrl+Enter sends</span>
      </div>
      <TestOutcome outcome={outcome} />
    </div>
  );
}

function TestOutcome(props: { outcome: Outcome }): JSX.Element | null {
  const { outcome } = props;
  if (outcome === null) {
    return null;
  }
  if (outcome.kind === 'error') {
    return (
      <pre className="jp-mlmagics-error jp-mlmagics-test-error" role="alert">
        {outcome.message}
      </pre>
    );
  }
  const { answer } = outcome;
  return (
    <div className="jp-mlmagics-test-answer">
      <div className="jp-mlmagics-test-status">
        <span className="jp-mlmagics-badge" data-state="Healthy">
          {answer.status}
        </span>{' '}
        in{' '}
        <span className="jp-mlmagics-latency">
          {answer.latencyMs.toFixed(1)} ms
        </span>
      </div>
      <pre className="jp-mlmagics-answer">
        {typeof answer.answer === 'string'
          ? answer.answer
          : JSON.stringify(answer.answer, null, 2)}
      </pre>
    </div>
  );
}

/** Open the Test dialog for `service`; resolves when it is closed. */
export async function openTestDialog(
  api: DeploymentsAPI,
  service: string
): Promise<void> {
  const body = ReactWidget.create(<TestForm api={api} service={service} />);
  body.addClass('jp-mlmagics-test-dialog');
  const dialog = new Dialog({
    title: `Test ${service}`,
    body,
    buttons: [Dialog.cancelButton({ label: 'Close' })]
  });
  await dialog.launch();
  dialog.dispose();
}
