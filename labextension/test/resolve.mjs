// Lets Node load lib/ as TypeScript emitted it: relative imports without the `.js` extension
// (what webpack resolves in the lab build). `node --import ./test/resolve.mjs --test test/services.test.mjs`.
import { register } from 'node:module';

register(
  'data:text/javascript,' +
    encodeURIComponent(`
export async function resolve(specifier, context, next) {
  if (/^\\.\\.?\\//.test(specifier) && !/\\.[cm]?js$/.test(specifier)) {
    return next(specifier + '.js', context);
  }
  return next(specifier, context);
}`)
);
