"""Drives the test suite's fake E2B service with the official `e2b` SDK.

If this passes, the fake speaks E2B's control API and envd protocol (Connect-RPC streaming,
files, auth headers) the way the real service does, as far as the SDK can tell. Run by
tests/e2b.rs with E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL pointing at the fake.
"""
import os
import sys
import urllib.error
import urllib.request

try:
    from e2b import (
        AuthenticationException,
        CommandExitException,
        Sandbox,
        SandboxQuery,
        TimeoutException,
    )
except ImportError:
    sys.exit("the `e2b` package is missing: pip install -r tests/sdk_checks/requirements.txt")


def main() -> None:
    project = "project-" + os.urandom(4).hex()
    sandbox = Sandbox.create(template="codeflux-nextjs", timeout=120, metadata={"project": project})
    assert sandbox.sandbox_id

    result = sandbox.commands.run("echo out; echo err >&2")
    assert result.exit_code == 0, result
    assert result.stdout == "out\n", repr(result.stdout)
    assert result.stderr == "err\n", repr(result.stderr)

    try:
        sandbox.commands.run("echo failing >&2; exit 3")
        raise AssertionError("a non-zero exit must raise")
    except CommandExitException as error:
        assert error.exit_code == 3, error.exit_code
        assert error.stderr == "failing\n", repr(error.stderr)

    # A multi-byte character split across two output chunks.
    split = sandbox.commands.run("printf 'h\\303'; sleep 0.2; printf '\\251llo ✓\\n'")
    assert split.stdout == "héllo ✓\n", repr(split.stdout)

    try:
        sandbox.commands.run("sleep 30", timeout=1)
        raise AssertionError("the command must time out")
    except TimeoutException:
        pass

    sandbox.files.write("/home/user/notes/today.txt", "written by the SDK ✓")
    assert sandbox.files.read("/home/user/notes/today.txt") == "written by the SDK ✓"
    blob = bytes(range(256))
    sandbox.files.write("/home/user/blob.bin", blob)
    assert bytes(sandbox.files.read("/home/user/blob.bin", format="bytes")) == blob
    assert sandbox.commands.run("cat notes/today.txt").stdout == "written by the SDK ✓"

    host = sandbox.get_host(3000)
    assert host.startswith(f"3000-{sandbox.sandbox_id}."), host

    sandbox.set_timeout(300)

    again = Sandbox.connect(sandbox.sandbox_id)
    assert again.commands.run("cat notes/today.txt").stdout == "written by the SDK ✓"

    paginator = Sandbox.list(query=SandboxQuery(metadata={"project": project}))
    found = paginator.next_items()
    assert [info.sandbox_id for info in found] == [sandbox.sandbox_id], found
    assert found[0].metadata == {"project": project}
    assert Sandbox.list(query=SandboxQuery(metadata={"project": "nobody"})).next_items() == []

    # A private sandbox: its ports answer only requests with its traffic token (what
    # CodeFlux creates, so that the app is reached through CodeFlux's proxy alone).
    private = Sandbox.create(
        template="codeflux-nextjs", timeout=60, network={"allow_public_traffic": False}
    )
    token = private.traffic_access_token
    assert token, "a private sandbox comes with its traffic token"
    port_host = private.get_host(3000)
    edge = os.environ["E2B_API_URL"] + "/"
    try:
        urllib.request.urlopen(urllib.request.Request(edge, headers={"Host": port_host}))
        raise AssertionError("a private port must refuse a request without the token")
    except urllib.error.HTTPError as refused:
        assert refused.code == 403, refused.code
    allowed = urllib.request.Request(
        edge, headers={"Host": port_host, "e2b-traffic-access-token": token}
    )
    assert urllib.request.urlopen(allowed).status == 200
    public = Sandbox.create(template="codeflux-nextjs", timeout=60)
    assert public.traffic_access_token is None
    public.kill()
    private.kill()

    sandbox.kill()
    assert Sandbox.list(query=SandboxQuery(metadata={"project": project})).next_items() == []

    try:
        Sandbox.create(template="codeflux-nextjs", api_key="e2b_wrong")
        raise AssertionError("a bad key must be refused")
    except AuthenticationException:
        pass

    print("e2b SDK check passed")


if __name__ == "__main__":
    main()
