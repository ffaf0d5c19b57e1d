#!/usr/bin/env python3
"""The example browser app (examples/spa) in headless Chromium, against the local stack.

Starts `scripts/dev` on free ports with the app on http://localhost:<app> (the only allowed
origin), then, in a real browser (CK-*, CS-*, CORS):
- the app signs up, reads the user, refreshes, reads it again, changes the name, signs out, and
  then is refused: each answer's status is asserted, and no token is ever readable from
  JavaScript (`document.cookie` stays empty, no answer body carries a token);
- it verifies its address with the mailed code; it lists its sessions (two more signed in
  elsewhere), ends one with its button and then all the others, and its own session goes on;
- it turns on two-step sign-in with a code computed (by pyotp) from the key it shows, shows the
  recovery codes, is asked for a code at the next sign-in and gets in with one, and turns it off
  with the password and a recovery code;
- a page on another origin (http://localhost:<evil>, not allowed) can neither read any answer
  (the signed-in user, a refresh) nor change state (sign out, change the password, by fetch or
  by a form), and the user's session is intact afterwards;
- the same app calling the API as http://127.0.0.1 instead of localhost signs up (201) but is
  then refused (401): the SameSite=Strict cookies are cross-site, which is why the README and
  `make dev` say to use localhost.
"""

import functools
import http.server
import os
import shutil
import sys
import tempfile
import threading

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from stack import PASSWORD, Checks, Client, Ports, free_port, mails_to, start_stack, stop_with_ctrl_c, unique, wait_for_api  # noqa: E402

checks = Checks()

# A page on an origin that is not allowed: it tries to read and to change the signed-in
# user's state with the browser's cookies, and reports what it could do.
EVIL_PAGE = """<!doctype html><meta charset="utf-8"><title>elsewhere</title>
<form id="form" method="post" enctype="text/plain" target="sink"><input name='{"current_password":"x","new_password":"' value='owned by a form"}'></form>
<iframe name="sink"></iframe>
<script>
window.attempt = async function (api) {
  const report = {};
  async function tryFetch(name, path, options) {
    try {
      const response = await fetch(api + path, Object.assign({ credentials: "include" }, options));
      report[name] = { read: true, status: response.status, body: await response.text() };
    } catch (err) {
      report[name] = { read: false, error: String(err) };
    }
  }
  const json = { "content-type": "application/json", "x-token-delivery": "cookie" };
  await tryFetch("me", "/auth/me", {});
  await tryFetch("refresh", "/auth/refresh", { method: "POST", headers: json, body: "{}" });
  await tryFetch("logout", "/auth/logout", { method: "POST", headers: json, body: '{"scope":"global"}' });
  await tryFetch("change", "/auth/password/change", { method: "POST", headers: json,
    body: '{"current_password":"x","new_password":"owned by a fetch"}' });
  // Requests a page may send without a preflight: the browser sends them, the answer stays opaque.
  await tryFetch("simple_logout", "/auth/logout", { method: "POST", mode: "no-cors",
    headers: { "content-type": "text/plain" }, body: '{"scope":"global"}' });
  document.getElementById("form").action = api + "/auth/password/change";
  document.getElementById("form").submit();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return report;
};
</script>"""


def chromium(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def serve(directory, port):
    handler = functools.partial(QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class App:
    """The example app in one tab, driven as a person would: forms and buttons."""

    def __init__(self, driver, url):
        self.driver = driver
        driver.get(url)
        self.wait_for_calls(1)  # it asks who is signed in as it opens

    def calls(self):
        return [(li.get_attribute("data-op"), int(li.get_attribute("data-status")))
                for li in self.driver.find_elements(By.CSS_SELECTOR, "#log li")]

    def wait_for_calls(self, count):
        WebDriverWait(self.driver, 120).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log li")) >= count)
        return self.calls()[count - 1]

    def submit(self, form, values):
        for name, value in values.items():
            field = self.driver.find_element(By.CSS_SELECTOR, f"#{form} [name={name}]")
            field.clear()
            field.send_keys(value)
        return self.act(lambda: self.driver.find_element(By.CSS_SELECTOR, f"#{form} button").click())

    def click(self, button):
        return self.act(lambda: self.driver.find_element(By.ID, button).click())

    def act(self, action):
        before = len(self.calls())
        action()
        return self.wait_for_calls(before + 1)

    def user_shown(self):
        return self.driver.find_element(By.ID, "user").text

    def page_text(self):
        return self.driver.find_element(By.TAG_NAME, "body").text


def main():
    ports = Ports()
    app_port, evil_port = free_port(), free_port()
    app_origin = f"http://localhost:{app_port}"
    api = f"http://localhost:{ports.api}"
    env = {"APP_PORT": str(app_port), "ALLOWED_ORIGINS": app_origin, "STACK_NAME": "browser"}
    profile = tempfile.mkdtemp(prefix="chromium-")
    evil_dir = tempfile.mkdtemp(prefix="elsewhere-")
    with open(os.path.join(evil_dir, "index.html"), "w") as f:
        f.write(EVIL_PAGE)
    evil = serve(evil_dir, evil_port)
    process, log = start_stack(ports, env)
    driver = None
    try:
        wait_for_api(f"http://127.0.0.1:{ports.api}", process)
        driver = chromium(profile)
        run_checks(driver, app_origin, api, ports, evil_port)
    finally:
        if driver:
            driver.quit()
        if process.poll() is None:
            stop_with_ctrl_c(process)
        log.close()
        evil.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(evil_dir, ignore_errors=True)
    sys.exit(checks.summary("browser"))


def run_checks(driver, app_origin, api, ports, evil_port):
    username = unique("spa")
    email = f"{username}@example.com"
    state = {}

    def the_app_signs_up_refreshes_renames_and_signs_out():
        app = App(driver, f"{app_origin}/?api={api}")
        assert app.calls() == [("me", 401)], f"signed out at first: {app.calls()}"
        assert app.submit("register", {"username": username, "email": email, "password": PASSWORD}) == ("register", 201)
        assert username in app.user_shown()
        assert app.click("me") == ("me", 200)
        assert app.click("refresh") == ("refresh", 200)
        assert app.click("me") == ("me", 200)
        assert app.submit("rename", {"full_name": "Ada Lovelace"}) == ("rename", 200)
        assert '"full_name": "Ada Lovelace"' in app.user_shown(), app.user_shown()
        assert app.click("me") == ("me", 200) and "Ada Lovelace" in app.user_shown()
        state["cookie"] = driver.execute_script("return document.cookie")
        assert app.click("logout") == ("logout", 204)
        app = App(driver, f"{app_origin}/?api={api}")
        assert app.calls() == [("me", 401)], f"signed out, the page reloaded: {app.calls()}"
        assert driver.execute_script("return document.cookie") == ""

    def the_app_verifies_the_address_with_the_mailed_code():
        other = unique("spa")
        app = App(driver, f"{app_origin}/?api={api}")
        assert app.submit("register", {"username": other, "email": f"{other}@example.com", "password": PASSWORD}) == ("register", 201)
        assert driver.find_element(By.ID, "verify").is_displayed(), "an unverified user is asked for the code"
        assert '"email_verified": false' in app.user_shown(), app.user_shown()
        mails = mails_to(f"http://127.0.0.1:{ports.aws}", f"{other}@example.com", at_least=1)
        code = mails[-1]["text"].split("code:")[1].split()[0]
        assert app.submit("verify", {"code": code}) == ("verify", 200)
        assert '"email_verified": true' in app.user_shown(), app.user_shown()
        assert not driver.find_element(By.ID, "verify").is_displayed()
        assert app.click("logout") == ("logout", 204)

    def the_app_lists_its_sessions_and_ends_the_others():
        # Issue 16: the session list with a revoke button, and "sign out everywhere else".
        other = unique("spa")
        app = App(driver, f"{app_origin}/?api={api}")
        assert app.submit("register", {"username": other, "email": f"{other}@example.com", "password": PASSWORD}) == ("register", 201)
        client = Client(f"http://127.0.0.1:{ports.api}")
        devices = []
        for agent in ("phone-app/2.1", "tablet-app/1.0"):
            signed_in = client.call("POST", "/auth/login", {"identifier": other, "password": PASSWORD},
                                    headers={"user-agent": agent})
            assert signed_in.status == 200, signed_in.raw
            devices.append(signed_in.json)

        def listed():
            return [(li.get_attribute("data-current"), li.text)
                    for li in driver.find_elements(By.CSS_SELECTOR, "#session-list li")]

        assert app.click("sessions") == ("sessions", 200)
        shown = listed()
        assert len(shown) == 3, shown
        assert [current for current, _ in shown].count("true") == 1, shown
        assert any("phone-app/2.1" in text for _, text in shown), shown
        phone = next(li for li in driver.find_elements(By.CSS_SELECTOR, "#session-list li") if "phone-app" in li.text)
        def then_the_list(action):
            before = len(app.calls())
            action()
            app.wait_for_calls(before + 2)
            return app.calls()[before:before + 2]

        ended = then_the_list(lambda: phone.find_element(By.CSS_SELECTOR, "button.end-session").click())
        assert ended == [("end-session", 204), ("sessions", 200)], ended
        WebDriverWait(driver, 30).until(lambda d: len(listed()) == 2)
        assert client.call("POST", "/auth/refresh", {"refresh_token": devices[0]["refresh_token"]}).status == 401
        assert client.call("POST", "/auth/refresh", {"refresh_token": devices[1]["refresh_token"]}).status == 200

        others = then_the_list(lambda: driver.find_element(By.ID, "logout-others").click())
        assert others == [("logout-others", 204), ("sessions", 200)], others
        WebDriverWait(driver, 30).until(lambda d: [c for c, _ in listed()] == ["true"])
        tablet = client.call("POST", "/auth/refresh", {"refresh_token": devices[1]["refresh_token"]})
        assert tablet.status == 401, tablet.raw
        assert app.click("refresh") == ("refresh", 200), "this browser's session goes on"
        assert app.click("logout") == ("logout", 204)

    def the_app_turns_on_two_step_sign_in_and_signs_in_with_a_code():
        import re
        import time

        import pyotp

        other = unique("spa")
        app = App(driver, f"{app_origin}/?api={api}")
        assert app.submit("register", {"username": other, "email": f"{other}@example.com", "password": PASSWORD}) == ("register", 201)
        # A second factor goes only on a verified address: the app asks for the mailed code first.
        assert app.submit("mfa-setup", {"current_password": PASSWORD}) == ("mfa-setup", 403)
        mails = mails_to(f"http://127.0.0.1:{ports.aws}", f"{other}@example.com", at_least=1)
        assert app.submit("verify", {"code": mails[-1]["text"].split("code:")[1].split()[0]}) == ("verify", 200)
        assert driver.find_element(By.ID, "mfa-setup").is_displayed() and not driver.find_element(By.ID, "mfa-disable").is_displayed()
        assert app.submit("mfa-setup", {"current_password": PASSWORD}) == ("mfa-setup", 200)
        secret = driver.find_element(By.ID, "mfa-secret").text
        uri = driver.find_element(By.ID, "mfa-uri").text
        assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
        parsed = pyotp.parse_uri(uri)
        assert (parsed.secret, parsed.name) == (secret, other), uri
        totp = pyotp.TOTP(secret)
        assert app.submit("mfa-confirm", {"code": totp.now()}) == ("mfa-confirm", 200)
        codes = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#mfa-recovery-codes li")]
        assert len(set(codes)) == 10 and all(re.fullmatch(r"[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}", c) for c in codes), codes
        assert driver.find_element(By.ID, "mfa-recovery-codes").is_displayed()
        assert not driver.find_element(By.ID, "mfa-secret").is_displayed(), "the key is put away once confirmed"
        assert '"mfa_enabled": true' in app.user_shown(), app.user_shown()
        assert driver.find_element(By.ID, "mfa-disable").is_displayed() and not driver.find_element(By.ID, "mfa-setup").is_displayed()
        assert app.click("logout") == ("logout", 204)

        # The password alone: the code is asked for, and nothing is signed in yet.
        assert app.submit("login", {"identifier": other, "password": PASSWORD}) == ("login", 200)
        assert driver.find_element(By.ID, "mfa-verify").is_displayed(), "the second step is asked for"
        assert not driver.find_element(By.ID, "signed-in").is_displayed()
        assert driver.execute_script("return document.cookie") == ""
        # The code of the next time step (the confirmation spent this one; one step of drift is
        # allowed), computed by pyotp from the key the page showed.
        assert app.submit("mfa-verify", {"code": totp.at(time.time() + 30)}) == ("mfa-verify", 200)
        assert not driver.find_element(By.ID, "mfa-verify").is_displayed()
        assert f'"username": "{other}"' in app.user_shown() and '"mfa_enabled": true' in app.user_shown(), app.user_shown()
        assert app.click("me") == ("me", 200), "the second step set the session cookies"
        assert not driver.find_element(By.ID, "mfa-recovery").is_displayed(), "recovery codes are shown once"
        assert driver.execute_script("return document.cookie") == ""

        # Off again with the password and a recovery code; then the password alone signs in.
        assert app.submit("mfa-disable", {"current_password": PASSWORD, "code": codes[0]}) == ("mfa-disable", 204)
        assert '"mfa_enabled": false' in app.user_shown(), app.user_shown()
        assert driver.find_element(By.ID, "mfa-setup").is_displayed()
        assert app.click("logout") == ("logout", 204)
        assert app.submit("login", {"identifier": other, "password": PASSWORD}) == ("login", 200)
        assert not driver.find_element(By.ID, "mfa-verify").is_displayed()
        assert f'"username": "{other}"' in app.user_shown() and '"mfa_enabled": false' in app.user_shown(), app.user_shown()
        assert app.click("logout") == ("logout", 204)

    def no_token_is_readable_from_javascript():
        assert state.get("cookie") == "", f"document.cookie while signed in: {state.get('cookie')!r}"
        # Cookie mode: the answers the page reads carry no token.
        answer = driver.execute_async_script(
            """
            const [api, login, done] = arguments;
            fetch(api + "/auth/login", {method: "POST", credentials: "include",
              headers: {"content-type": "application/json", "x-token-delivery": "cookie"},
              body: JSON.stringify(login)})
              .then(async (r) => done({status: r.status, body: await r.text(), cookie: document.cookie}),
                    (e) => done({error: String(e)}));
            """,
            api, {"identifier": username, "password": PASSWORD},
        )
        assert answer.get("status") == 200, answer
        assert "access_token" not in answer["body"] and "refresh_token" not in answer["body"], answer["body"]
        assert '"token_type"' in answer["body"], "the rest of the token response is there"
        assert answer["cookie"] == "", answer["cookie"]

    def another_origin_can_neither_read_nor_change_anything():
        # Signed in (the previous check signed in again); the page elsewhere tries its worst.
        driver.get(f"http://localhost:{evil_port}/")
        driver.set_script_timeout(60)
        report = driver.execute_async_script(
            "const [api, done] = arguments; window.attempt(api).then(done, (e) => done({error: String(e)}));", api
        )
        for name in ("me", "refresh", "logout", "change"):
            assert report[name]["read"] is False, f"{name}: a page elsewhere read {report[name]}"
            assert "TypeError" in report[name]["error"], report[name]
        assert report["simple_logout"] == {"read": True, "status": 0, "body": ""}, "an opaque answer only"
        # Back in the app: still signed in, same user, the password unchanged.
        app = App(driver, f"{app_origin}/?api={api}")
        assert app.calls() == [("me", 200)], f"the session survived: {app.calls()}"
        assert app.click("refresh") == ("refresh", 200)
        assert app.click("logout") == ("logout", 204)
        assert app.submit("login", {"identifier": username, "password": PASSWORD}) == ("login", 200), "the password is unchanged"
        assert app.click("logout") == ("logout", 204)

    def cors_answers_only_the_allowed_origin():
        for origin, allowed in ((app_origin, True), (f"http://localhost:{evil_port}", False)):
            answer = preflight(ports.api, origin)
            if allowed:
                assert answer.status == 204 and answer.headers["access-control-allow-origin"] == origin, answer.headers
                assert answer.headers["access-control-allow-credentials"] == "true"
            else:
                assert "access-control-allow-origin" not in answer.headers, dict(answer.headers)

    def the_app_can_read_how_long_to_wait_after_a_429():
        # The API exposes Retry-After to the allowed origins (as the template's CORS does).
        App(driver, f"{app_origin}/?api={api}")
        answer = driver.execute_async_script(
            """
            const [api, login, done] = arguments;
            (async () => {
              let r;
              for (let i = 0; i < 6; i++) {
                r = await fetch(api + "/auth/login", {method: "POST", credentials: "include",
                  headers: {"content-type": "application/json", "x-token-delivery": "cookie"},
                  body: JSON.stringify(login)});
              }
              return {status: r.status, retryAfter: r.headers.get("retry-after")};
            })().then(done, (e) => done({error: String(e)}));
            """,
            api, {"identifier": unique("nobody"), "password": "not the password"},
        )
        assert answer.get("status") == 429, answer
        assert answer.get("retryAfter") and int(answer["retryAfter"]) >= 1, answer

    def the_api_as_127_0_0_1_is_cross_site_for_a_page_on_localhost():
        app = App(driver, f"{app_origin}/?api=http://127.0.0.1:{ports.api}")
        assert app.calls() == [("me", 401)]
        other = unique("spa")
        assert app.submit("register", {"username": other, "email": f"{other}@example.com", "password": PASSWORD}) == ("register", 201)
        assert app.click("me") == ("me", 401), "SameSite=Strict cookies of 127.0.0.1 are not sent from localhost"

    for name, fn in list(locals().items()):
        if callable(fn):
            checks.run(name, fn)


def preflight(port, origin):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("OPTIONS", "/auth/me", headers={
        "origin": origin, "access-control-request-method": "PATCH",
        "access-control-request-headers": "content-type,x-token-delivery",
    })
    answer = connection.getresponse()
    answer.read()
    connection.close()
    return answer


if __name__ == "__main__":
    main()
