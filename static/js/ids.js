// Event ids are Redis stream ids "<ms>-<seq>": ordered as number pairs, never
// as strings ("10-0" comes after "9-0").
function idKey(id) {
  const m = /^(\d+)-(\d+)$/.exec(String(id || ""));
  return m ? [Number(m[1]), Number(m[2])] : null;
}

// Is `a` after `b`? An unparsable `a` never is; anything is after a missing `b`.
export function idAfter(a, b) {
  const ka = idKey(a), kb = idKey(b);
  if (!ka) return false;
  if (!kb) return true;
  return ka[0] > kb[0] || (ka[0] === kb[0] && ka[1] > kb[1]);
}
