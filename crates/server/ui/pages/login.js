// #/login: the sign-in form (POST /v2/panel/session, which sets the session cookie).

import { signIn } from '../api.js';
import { clearError, h, showError } from '../dom.js';

export async function render(ctx) {
  ctx.title('Sign in');
  const email = h('input', {
    type: 'email',
    id: 'login-email',
    name: 'email',
    autocomplete: 'username',
    required: true,
    testid: 'login-email',
  });
  const password = h('input', {
    type: 'password',
    id: 'login-password',
    name: 'password',
    autocomplete: 'current-password',
    required: true,
    testid: 'login-password',
  });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'login-submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'card login', testid: 'login-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'login-email' }, 'Email'), email),
    h('div', { class: 'field' }, h('label', { for: 'login-password' }, 'Password'), password),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    if (!email.value.trim() || !password.value) {
      showError('Enter your email and password.');
      (email.value.trim() ? password : email).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      await signIn(email.value.trim(), password.value);
      ctx.afterSignIn();
    } catch (err) {
      if (!ctx.alive) return;
      submit.disabled = false;
      submit.textContent = 'Sign in';
      if (err.status === 401) {
        showError('Wrong email or password.');
        password.value = '';
        password.focus();
      } else if (err.status === 429) {
        const wait = Number(err.retryAfter);
        showError(
          `Too many sign-in attempts. Wait ${Number.isFinite(wait) && wait > 0 ? `${Math.ceil(wait)} seconds` : 'a minute'} and try again.`,
        );
      } else {
        showError(err);
      }
    }
  });
  ctx.main.append(
    form,
    h(
      'p',
      { class: 'muted small-print' },
      'The first account is created at start from THINGLINE_PANEL_EMAIL and THINGLINE_PANEL_PASSWORD.',
    ),
  );
  email.focus();
  ctx.ready();
}
