"""`koala up` / `koala down`, the all-in-one of the README's Quick start:
the five daemons on their fixed ports, the test image registered, a guest
launched with aws-cli, reached on the cluster LAN, and everything stopped
again, then started again on the same data.

It runs in network and mount namespaces of its own (unshare), so the fixed
ports and the fixed namespace names (koala-zone-a, koala-nc1) of a real
all-in-one on this host are not touched: /run/netns is a private tmpfs
there."""
import subprocess
import textwrap

from cloud import IMAGES
from conftest import AWS_BIN, KOALA_BIN

SCRIPT = textwrap.dedent(r"""
    set -euo pipefail
    ip link set lo up
    mkdir -p /run/netns
    mount -t tmpfs tmpfs /run/netns
    koala=$1 dir=$2 images=$3 aws_bin=$4
    # Whatever happens, what koala up started is stopped (by its PIDs).
    trap '"$koala" down --data-dir "$dir" > /dev/null 2>&1 || true' EXIT
    "$koala" up --data-dir "$dir" --images "$images" > "$dir.up1.log"
    grep "Koala is up" "$dir.up1.log" > /dev/null
    # The zone's storage controller: registered, and answering the CLC's
    # certificate over SOAP.
    "$koala" services --data-dir "$dir" | grep -E '^sc +sc1 +zone-a ' > /dev/null
    curl -s --cacert "$dir/ca/ca.pem" --cert "$dir/certs/clc.pem" \
        --key "$dir/certs/clc.key" -H 'Content-Type: text/xml' \
        -d '<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><DescribeResources xmlns="urn:koala:sc"/></Body></Envelope>' \
        https://127.0.0.1:8776/ | grep -q '<capacityBytes>107374182400<' \
        && echo "sc=ok"
    . "$dir/credentials"
    export AWS_PAGER= AWS_CONFIG_FILE=/dev/null
    ec2() { "$aws_bin" --endpoint-url http://127.0.0.1:8773 ec2 "$@"; }
    ami=$(ec2 describe-images --owners self \
          --filters Name=image-type,Values=machine Name=name,Values=koala-test \
          --query 'Images[0].ImageId' --output text)
    echo "ami=$ami"
    "$aws_bin" --endpoint-url http://127.0.0.1:8779 s3 ls | grep koala-images > /dev/null
    # A first bucket with the printed credentials (their region is every
    # service's own).
    "$aws_bin" --endpoint-url http://127.0.0.1:8779 s3 mb s3://first-bucket
    "$aws_bin" --endpoint-url http://127.0.0.1:8779 s3 ls | grep first-bucket > /dev/null
    # The guest's page open to everyone, as a user opens a web port (the
    # default group admits only its own members).
    ec2 authorize-security-group-ingress --group-name default \
        --protocol tcp --port 8080 --cidr 0.0.0.0/0 > /dev/null
    iid=$(ec2 run-instances --image-id "$ami" --instance-type t1.micro \
          --query 'Instances[0].InstanceId' --output text)
    echo "iid=$iid"
    state=
    for _ in $(seq 600); do
        state=$(ec2 describe-instances --instance-ids "$iid" --query \
            'Reservations[0].Instances[0].[State.Name,PrivateIpAddress]' \
            --output text)
        case "$state" in running*) break ;; esac
        sleep 0.2
    done
    echo "state=$state"
    ip=${state#running	}
    page=
    for _ in $(seq 180); do
        page=$(ip netns exec koala-zone-a curl -s -m 2 "http://$ip:8080/" \
               || true)
        case "$page" in *"ip=$ip"*) break ;; esac
        sleep 1
    done
    echo "page=$page"
    ec2 get-console-output --instance-id "$iid" --output text \
        | grep "KOALA-GUEST-READY ip=$ip" > /dev/null
    echo "console=ok"
    # The host itself reaches the instances (a route into the cluster).
    hostpage=$(curl -s -m 5 "http://$ip:8080/" || true)
    case "$hostpage" in *"ip=$ip"*) echo "host_route=ok" ;; esac
    # An elastic IP from the pool koala up routes from the host reaches
    # the instance from the host.
    eip=$(ec2 allocate-address --domain vpc \
          --query '[AllocationId,PublicIp]' --output text)
    ec2 associate-address --allocation-id "${eip%%	*}" \
        --instance-id "$iid" > /dev/null
    pubpage=
    for _ in $(seq 50); do
        pubpage=$(curl -s -m 2 "http://${eip##*	}:8080/" || true)
        case "$pubpage" in *"ip=$ip"*) break ;; esac
        sleep 0.2
    done
    case "$pubpage" in *"ip=$ip"*) echo "public_ip=ok" ;; esac
    # The sequence `koala up` printed, run as a user would (in a shell of
    # its own, from a scratch directory), its ssh made non-interactive and
    # retried until the user data has run.
    if grep -q "^Launch an instance and log into it:" "$dir.up1.log"; then
        sed -n '/^Launch an instance and log into it:/,/^  ssh -i/p' \
            "$dir.up1.log" | tail -n +2 | sed 's/^  //' > "$dir.seq.sh"
        grep -q '^ssh -i mykey.pem admin@$ip$' "$dir.seq.sh"
        sed -i '$d' "$dir.seq.sh"
        cat >> "$dir.seq.sh" <<'EOS'
for _ in $(seq 90); do
    out=$(ssh -i mykey.pem -o StrictHostKeyChecking=no \
          -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
          -o ConnectTimeout=5 -o LogLevel=ERROR admin@$ip \
          'cat /tmp/hello 2>/dev/null; hostname' || true)
    case "$out" in hello*) break ;; esac
    sleep 2
done
echo "ssh=$(echo $out)"
$EC2 terminate-instances --instance-ids $id > /dev/null
EOS
        mkdir -p "$dir.user"
        (cd "$dir.user" && PATH="$(dirname "$aws_bin"):$PATH" bash -e "$dir.seq.sh")
    fi
    "$koala" down --data-dir "$dir"
    ip netns list | grep -c koala- || true
    # The same cloud again: the data is kept, the VM was stopped with it.
    "$koala" up --data-dir "$dir" --images "$images" > "$dir.up2.log"
    . "$dir/credentials"
    echo "after=$(ec2 describe-instances --instance-ids "$iid" --query \
        'Reservations[0].Instances[0].State.Name' --output text)"
    echo "images=$(ec2 describe-images --owners self \
        --query 'length(Images)' --output text)"
    "$koala" down --data-dir "$dir"
    """)


def test_up_run_down_up(tmp_path):
    d = tmp_path / "koala"
    r = subprocess.run(
        ["unshare", "--net", "--mount", "--propagation", "private", "--",
         "bash", "-c", SCRIPT, "all-in-one", str(KOALA_BIN), str(d),
         str(IMAGES), str(AWS_BIN)],
        capture_output=True, text=True, timeout=900)
    out = r.stdout
    logs = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                   for p in sorted((d / "log").glob("*.log"))) \
        if (d / "log").exists() else ""
    assert r.returncode == 0, f"{out}\n{r.stderr}{logs}"
    lines = dict(line.split("=", 1) for line in out.splitlines()
                 if "=" in line)
    assert lines.get("sc") == "ok", out
    assert lines["ami"].startswith("ami-")
    assert lines["iid"].startswith("i-")
    assert lines["state"].startswith("running\t10.111.")
    assert lines["iid"] in lines["page"]
    assert lines["console"] == "ok"
    assert lines["host_route"] == "ok"
    assert lines.get("public_ip") == "ok", out
    debian = (IMAGES / "debian" / "root.img").exists()
    if debian:
        # ssh from the host into the Debian guest as printed: the user
        # data ran, the hostname is EC2's
        assert lines["ssh"].startswith("hello ip-10-111-"), lines["ssh"]
    # koala down removed its namespaces (the count printed after it).
    assert "\n0\n" in out
    # Instance-store: a VM running when the cloud went down ends terminated;
    # the images (kernel, ramdisk, machine) are all still registered, and
    # the second `up` registered none twice.
    assert lines["after"] == "terminated"
    assert lines["images"] == ("6" if debian else "3")
