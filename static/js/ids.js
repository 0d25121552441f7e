// Event ids are Redis stream ids "<ms>-<seq>", ordered as number pairs: the
// comparison is the live client's (static/livedash-htmx.js), so there is one.
export const idAfter = window.LiveDash.idAfter;
