/**
 * The panel's pieces: a state badge, a collapsible section, rows for models, images and services,
 * and a service's detail (URIs, masked keys with copy, last log lines, Test and Delete).
 */
import * as React from 'react';

import { IImage, IModel, IService } from './api';
import { INotice } from './model';

export function StateBadge(props: { state: string }): JSX.Element {
  return (
    <span
      className="jp-mlmagics-badge"
      data-state={props.state}
      title={`state: ${props.state}`}
    >
      {props.state}
    </span>
  );
}

export function Section(props: {
  title: string;
  count: number;
  empty: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <details className="jp-mlmagics-section" data-section={props.title} open>
      <summary className="jp-mlmagics-section-title">
        {props.title} <span className="jp-mlmagics-count">{props.count}</span>
      </summary>
      {props.count === 0 ? (
        <div className="jp-mlmagics-empty">{props.empty}</div>
      ) : (
        <ul className="jp-mlmagics-list">{props.children}</ul>
      )}
    </details>
  );
}

export function NoticeLine(props: {
  notice: INotice | null;
  onDismiss: () => void;
}): JSX.Element | null {
  const { notice } = props;
  if (!notice) {
    return null;
  }
  return (
    <div
      className={`jp-mlmagics-notice jp-mlmagics-${notice.kind}`}
      role={notice.kind === 'error' ? 'alert' : 'status'}
      title={notice.text}
    >
      <span className="jp-mlmagics-notice-text">{notice.text}</span>
      <button
        className="jp-mlmagics-icon-button"
        aria-label="Dismiss"
        onClick={props.onDismiss}
      >
        ×
      </button>
    </div>
  );
}

function DeleteButton(props: {
  label: string;
  onClick: () => void;
}): JSX.Element {
  return (
    <button
      className="jp-mlmagics-button jp-mlmagics-delete"
      title={`Delete ${props.label}`}
      onClick={event => {
        event.stopPropagation();
        props.onClick();
      }}
    >
      Delete
    </button>
  );
}

/** " · by ana@ana-laptop (train.ipynb)": who made it, in a team's workspace; nothing when not recorded. */
function byLine(createdBy: string): string {
  return createdBy ? ` · by ${createdBy}` : '';
}

export function ModelRow(props: {
  model: IModel;
  onDelete: () => void;
}): JSX.Element {
  const { model } = props;
  const usedBy = model.images.length
    ? `used by ${model.images.join(', ')}`
    : 'not used by an image';
  return (
    <li className="jp-mlmagics-row" data-id={model.id}>
      <div className="jp-mlmagics-row-main">
        <span className="jp-mlmagics-name">{model.id}</span>
        <span className="jp-mlmagics-muted">
          {usedBy}
          {byLine(model.createdByText)}
        </span>
      </div>
      <DeleteButton label={`model ${model.id}`} onClick={props.onDelete} />
    </li>
  );
}

export function ImageRow(props: {
  image: IImage;
  onDelete: () => void;
}): JSX.Element {
  const { image } = props;
  return (
    <li className="jp-mlmagics-row" data-id={image.id}>
      <div className="jp-mlmagics-row-main">
        <span className="jp-mlmagics-name">{image.id}</span>
        <StateBadge state={image.creationState} />
        <span className="jp-mlmagics-muted">
          {image.modelIds.join(', ')}
          {byLine(image.createdByText)}
        </span>
      </div>
      <DeleteButton label={`image ${image.id}`} onClick={props.onDelete} />
    </li>
  );
}

export function ServiceRow(props: {
  service: IService;
  selected: boolean;
  onSelect: () => void;
}): JSX.Element {
  const { service } = props;
  return (
    <li
      className={`jp-mlmagics-row jp-mlmagics-service${props.selected ? ' jp-mod-selected' : ''}`}
      data-service={service.name}
      role="button"
      tabIndex={0}
      aria-expanded={props.selected}
      onClick={props.onSelect}
      onKeyDown={event =>
        (event.key === 'Enter' || event.key === ' ') && props.onSelect()
      }
    >
      <div className="jp-mlmagics-row-main">
        <span className="jp-mlmagics-name">{service.name}</span>
        <StateBadge state={service.state} />
        <span className="jp-mlmagics-muted">
          {service.runsOn} · {service.imageId}
          {byLine(service.createdByText)}
        </span>
      </div>
    </li>
  );
}

function Link(props: { href: string | null }): JSX.Element {
  return props.href ? (
    <a href={props.href} target="_blank" rel="noopener noreferrer">
      {props.href}
    </a>
  ) : (
    <span className="jp-mlmagics-muted">—</span>
  );
}

export function ServiceDetail(props: {
  service: IService;
  logs: string[];
  onTest: () => void;
  onDelete: () => void;
  onCopyKey: (which: 'primary' | 'secondary') => void;
}): JSX.Element {
  const { service } = props;
  return (
    <div className="jp-mlmagics-detail" data-detail={service.name}>
      <dl className="jp-mlmagics-fields">
        <dt>scoring URI</dt>
        <dd className="jp-mlmagics-scoring-uri">
          <Link href={service.scoringUri} />
        </dd>
        <dt>swagger URI</dt>
        <dd>
          <Link href={service.swaggerUri} />
        </dd>
        {service.keys ? (
          (['primary', 'secondary'] as const).map(which => (
            <React.Fragment key={which}>
              <dt>{which} key</dt>
              <dd>
                <code className="jp-mlmagics-key">{service.keys?.[which]}</code>
                <button
                  className="jp-mlmagics-button"
                  title={`Copy the ${which} key`}
                  onClick={() => props.onCopyKey(which)}
                >
                  Copy
                </button>
              </dd>
            </React.Fragment>
          ))
        ) : (
          <>
            <dt>keys</dt>
            <dd className="jp-mlmagics-muted">key auth off</dd>
          </>
        )}
      </dl>
      {service.error ? (
        <pre className="jp-mlmagics-error">{service.error}</pre>
      ) : null}
      <div className="jp-mlmagics-detail-actions">
        <button
          className="jp-mlmagics-button jp-mlmagics-test-button"
          onClick={props.onTest}
        >
          Test…
        </button>
        <button
          className="jp-mlmagics-button jp-mlmagics-delete"
          onClick={props.onDelete}
        >
          Delete
        </button>
      </div>
      <div className="jp-mlmagics-logs-title">Last log lines</div>
      <pre className="jp-mlmagics-logs">
        {props.logs.length ? props.logs.join('\n') : '(no log lines yet)'}
      </pre>
    </div>
  );
}
