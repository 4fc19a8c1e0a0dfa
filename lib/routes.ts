// The client protocol's actions: one route key each, all served by the `message` function.
// Adding an action to the stack is one line here (the local gateway reads the routes from the template).

/** Action route keys, matched against `$request.body.action`. */
export const ACTIONS = ['join', 'leave', 'sendmessage', 'whisper', 'history', 'whoami', 'ping'] as const;

/** An action route key. */
export type Action = (typeof ACTIONS)[number];

/** How API Gateway picks a route from an incoming frame. */
export const ROUTE_SELECTION_EXPRESSION = '$request.body.action';
