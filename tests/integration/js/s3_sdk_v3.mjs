// s3_sdk_v3.mjs: drives Walrus with the AWS SDK for JavaScript v3 as an
// application would, default settings: since 3.729 the SDK computes a CRC32
// of every upload and sends it as an aws-chunked trailer
// (STREAMING-UNSIGNED-PAYLOAD-TRAILER), with no Content-Length for streams.
// Usage: node s3_sdk_v3.mjs ENDPOINT BUCKET (keys in AWS_* variables).
// Prints one line per check; exits 1 at the first failure.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand,
  HeadObjectCommand, ListObjectsV2Command, DeleteObjectCommand,
  DeleteBucketCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";

const [endpoint, bucket] = process.argv.slice(2);
const s3 = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true });

function check(what, ok, detail) {
  console.log(`${ok ? "ok" : "FAIL"} ${what}${detail ? ": " + detail : ""}`);
  if (!ok) process.exit(1);
}

const md5 = (b) => createHash("md5").update(b).digest("hex");
const body = async (r) => Buffer.from(await r.Body.transformToByteArray());

await s3.send(new CreateBucketCommand({ Bucket: bucket }));

// A buffer: the SDK sends its CRC32 (header or trailer, its choice).
const small = Buffer.from("hello from the v3 sdk\n".repeat(100));
let r = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "small.txt",
  Body: small, ContentType: "text/plain", Metadata: { origin: "js" } }));
check("put buffer", r.ETag === `"${md5(small)}"`, r.ETag);
check("put buffer checksum", typeof r.ChecksumCRC32 === "string", r.ChecksumCRC32);

// A stream: the SDK cannot hash it beforehand, so it sends it aws-chunked
// with its CRC32 in a trailer (over HTTPS unsigned, over HTTP signed).
const big = Buffer.alloc(3 * 1024 * 1024 + 11);
for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
const chunks = [];
for (let i = 0; i < big.length; i += 65536) chunks.push(big.subarray(i, i + 65536));
r = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "stream.bin",
  Body: Readable.from(chunks), ContentLength: big.length }));
check("put stream", r.ETag === `"${md5(big)}"`, r.ETag);
check("put stream checksum", typeof r.ChecksumCRC32 === "string", r.ChecksumCRC32);

// Through lib-storage, a stream of unknown length in one part.
const up = new Upload({ client: s3, params: { Bucket: bucket, Key: "stream2.bin",
  Body: Readable.from(chunks) }, partSize: 8 * 1024 * 1024 });
r = await up.done();
check("upload stream", r.ETag === `"${md5(big)}"`, r.ETag);

let g = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "stream.bin",
  ChecksumMode: "ENABLED" }));
let got = await body(g);
check("get stream back", got.equals(big), `${got.length} bytes`);
check("stored bytes are the payload", g.ContentLength === big.length,
      String(g.ContentLength));

g = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "small.txt",
  ChecksumMode: "ENABLED" }));
got = await body(g);
check("get buffer back", got.equals(small));
check("metadata", g.Metadata?.origin === "js", JSON.stringify(g.Metadata));
check("checksum kept", typeof g.ChecksumCRC32 === "string", g.ChecksumCRC32);

// Multipart through lib-storage (parts carry their own checksums).
const mp = Buffer.alloc(12 * 1024 * 1024);
for (let i = 0; i < mp.length; i++) mp[i] = (i * 31) & 0xff;
r = await new Upload({ client: s3, params: { Bucket: bucket, Key: "mp.bin",
  Body: mp }, partSize: 5 * 1024 * 1024 }).done();
check("multipart upload", /-3"$/.test(r.ETag), r.ETag);
const h = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "mp.bin" }));
check("multipart size", h.ContentLength === mp.length, String(h.ContentLength));
got = await body(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "mp.bin" })));
check("multipart bytes", got.equals(mp));

const l = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
check("list", (l.Contents || []).map((o) => o.Key).join(",") ===
      "mp.bin,small.txt,stream.bin,stream2.bin",
      JSON.stringify(l.Contents?.map((o) => o.Key)));

// Errors arrive as the SDK's typed exceptions.
try {
  await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "missing" }));
  check("NoSuchKey", false, "no error");
} catch (e) {
  check("NoSuchKey", e.name === "NoSuchKey", e.name);
}

for (const k of ["small.txt", "stream.bin", "stream2.bin", "mp.bin"])
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: k }));
await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
check("cleanup", true);
