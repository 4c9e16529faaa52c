// The service classes (src/service.ts, compiled to lib/) against a real liveml control plane.
//
// Run by tests/test_labextension.py, which starts `liveml server`, releases the reference house
// model as 1.0 (Production) of LIVEML_OBJECTIVE and runs `node --test` with LIVEML_URL and
// LIVEML_TOKEN. By hand: the same variables, then, in labextension/,
// `node --import ./test/resolve.mjs --test test/services.test.mjs`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ServerConnection } from '@jupyterlab/services';

import { LiveMLError, requestAPI } from '../lib/handler.js';
import { LiveML } from '../lib/service.js';

const { LIVEML_URL: url, LIVEML_TOKEN: token, LIVEML_OBJECTIVE: objective } = process.env;
const settings = ServerConnection.makeSettings({ baseUrl: url, token, appendToken: false });
const liveml = new LiveML(settings);
const ROW = { 'house-location': 'New York', bedrooms: 3, bathrooms: 1.5 };

/** The LiveMLError a promise rejects with. */
async function refused(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof LiveMLError, `not a LiveMLError: ${error}`);
    return error;
  }
  assert.fail('the server accepted it');
}

async function until(what, check, timeout = 120_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) {
      return value;
    }
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise(resolve => setTimeout(resolve, 250));
  }
}

test('an error answer becomes a LiveMLError with the envelope', async () => {
  const error = await refused(liveml.deployments.get('no-such-deployment'));
  assert.equal(error.status, 404);
  assert.equal(error.errorName, 'LiveDeploymentNotFound');
  assert.equal(error.errorCode, 'NOT_FOUND');
  assert.ok(error.isEnvelope);
  assert.match(error.message, /no-such-deployment/);
});

test('a wrong token is refused with 401 in the envelope', async () => {
  const other = new LiveML(ServerConnection.makeSettings({ baseUrl: url, token: 'lml_wrong' }));
  const error = await refused(other.deployments.list());
  assert.equal(error.status, 401);
  assert.equal(error.errorCode, 'UNAUTHORIZED');
});

test('a path outside liveml is not an envelope (the panel says liveml is missing)', async () => {
  const error = await refused(requestAPI('../../not-liveml', {}, settings));
  assert.equal(error.isEnvelope, false);
});

test('objectives, submissions, releases, tag history and profiles', async () => {
  const objectives = await liveml.objectives.list();
  const obj = objectives.find(o => o.name === objective);
  assert.ok(obj, `${objective} not in ${objectives.map(o => o.name)}`);
  assert.equal((await liveml.objectives.get(obj.rid)).name, objective);
  const [submission] = await liveml.objectives.submissions(objective);
  assert.equal(submission.name, 'v1');
  assert.deepEqual(
    submission.api.inputs[0].columns.map(c => c.name),
    ['house-location', 'bedrooms', 'bathrooms']
  );
  const [release] = await liveml.objectives.releases(objective);
  assert.equal(release.version, '1.0');
  assert.equal(release.tag, 'PRODUCTION');
  const history = await liveml.objectives.tagHistory(objective);
  assert.deepEqual(history.map(h => [h.version, h.tag]).sort(), [['1.0', 'PRODUCTION'], ['1.0', 'STAGING']]);
  const profiles = await liveml.profiles.get();
  assert.ok(profiles.replicaProfiles.some(p => p.name === 'default'));
  assert.ok(profiles.resourceProfiles.some(p => p.name === 'default'));
});

test('a release to Staging and a promotion through the service', async () => {
  const [submission] = await liveml.objectives.submissions(objective);
  const staged = await liveml.objectives.release(objective, {
    submission: submission.rid,
    version: '1.1',
    note: 'from node',
    tag: 'STAGING'
  });
  assert.equal(staged.tag, 'STAGING');
  const taken = await refused(
    liveml.objectives.release(objective, { submission: 'nope', version: '1.1' })
  );
  assert.equal(taken.status >= 400 && taken.status < 500, true);
  const promoted = await liveml.objectives.promote(objective, '1.1');
  assert.equal(promoted.tag, 'PRODUCTION');
  const back = await liveml.objectives.promote(objective, '1.0');
  assert.equal(back.version, '1.0');
});

test('a deployment through its whole life: create, query, logs, metrics, edit, disable, delete', async () => {
  const invalid = await refused(liveml.deployments.create({ objective, name: '!!bad' }));
  assert.equal(invalid.status, 400);
  assert.equal(invalid.parameters.field, 'name');

  const dep = await liveml.deployments.create({
    objective,
    name: 'Node houses',
    environment: 'PRODUCTION',
    runtimeConfiguration: { minReplicas: 1, maxReplicas: 1 }
  });
  assert.match(dep.rid, /^ri\.foundry-ml-live\.main\.live-deployment\./);
  assert.equal(dep.apiName, 'node-houses');
  const taken = await refused(
    liveml.deployments.create({ objective, name: 'Node twin', apiName: 'node-houses' })
  );
  assert.equal(taken.errorName, 'ApiNameAlreadyExists');
  assert.equal(taken.parameters.apiName, 'node-houses');

  await until('ACTIVE', async () => (await liveml.deployments.get(dep.rid)).status.state === 'ACTIVE');
  const listed = await liveml.deployments.list();
  assert.ok(listed.some(d => d.rid === dep.rid));

  const answer = await liveml.inference.transform(dep.rid, [ROW, ROW]);
  assert.equal(answer.responseData.length, 2);
  assert.ok(Object.values(answer.responseData[0]).some(v => typeof v === 'number' && v > 0));
  const [{ api }] = await liveml.objectives.submissions(objective);
  const v2 = await liveml.inference.transformV2(dep.rid, { [api.inputs[0].name]: [ROW] });
  assert.equal(v2[api.outputs[0].name].length, 1);
  const bad = await refused(liveml.inference.transform(dep.rid, [{ bedrooms: 'many' }]));
  assert.equal(bad.status, 400);

  const events = await liveml.events.list(dep.rid, 5);
  assert.ok(events.length > 0 && events.length <= 5);
  assert.ok(events.some(e => e.kind === 'created'));

  const page = await until('a log record', async () => {
    const found = await liveml.logs.search(dep.rid, { since: '1h', columns: ['time', 'message'], limit: 1 });
    return found.data.length ? found : null;
  });
  assert.deepEqual(Object.keys(page.data[0]).sort(), ['message', 'time']);
  const syntax = await refused(liveml.logs.search(dep.rid, { query: 'level:(' }));
  assert.equal(syntax.status, 400);
  const text = await liveml.logs.download(dep.rid, { since: '1h' });
  assert.ok(text.length > 0);

  const samples = await until('metrics', async () => {
    const found = await liveml.metrics.get(dep.rid, { since: '15m', kind: 'container' });
    return found.length ? found : null;
  });
  assert.ok(samples.every(s => s.kind === 'container'));

  const renamed = await liveml.deployments.setApiName(dep.rid, 'node-houses-2');
  assert.equal(renamed.apiName, 'node-houses-2');
  const scaled = await liveml.deployments.update(dep.rid, { runtimeConfiguration: { maxReplicas: 2 } });
  assert.equal(scaled.runtimeConfiguration.maxReplicas, 2);
  assert.equal(scaled.generation, dep.generation);
  const rerolled = await liveml.deployments.setOverrides(dep.rid, { cpu: 0.5 });
  assert.equal(rerolled.generation, dep.generation + 1);
  const config = await liveml.deployments.runtimeConfiguration(dep.rid);
  assert.equal(config.cpu, 0.5);
  const tooMany = await refused(
    liveml.deployments.update(dep.rid, { runtimeConfiguration: { maxReplicas: 1000 } })
  );
  assert.equal(tooMany.parameters.field, 'runtimeConfiguration.maxReplicas');

  assert.equal((await liveml.deployments.disable(dep.rid)).enabled, false);
  assert.equal((await liveml.deployments.enable(dep.rid)).enabled, true);
  const deleted = await liveml.deployments.delete(dep.rid);
  assert.deepEqual(deleted, { rid: dep.rid, deleted: true });
  const gone = await refused(liveml.deployments.get(dep.rid));
  assert.equal(gone.status, 404);
});
