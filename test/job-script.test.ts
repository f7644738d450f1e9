import { expect } from 'chai';
import { DEFAULT_PRIORITY, MAX_ARRAY_TASKS, MAX_DURATION_SEC, MAX_KEEP_PARTITION_SEC, parseArraySpec, parseDependencies, parseDuration, parseJobScript, type Directives } from '../core/jobs/job-script.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import { MAX_SCRIPT_BYTES } from '../terminal-protocol/terminal-methods.js';

/** A script whose directives start on line 2, after the shebang. */
const script = (...directives: string[]): string => ['#!/bin/sh', ...directives, 'echo hello'].join('\n') + '\n';

const directivesOf = (...lines: string[]): Directives => parseJobScript(script(...lines)).directives;

/** The error parseJobScript throws for `text` (fails the test if it parses). */
function parseError(text: string): RpcError {
  try {
    parseJobScript(text);
  } catch (error) {
    expect(error).to.be.instanceOf(RpcError);
    return error as RpcError;
  }
  expect.fail(`the script parsed:\n${text}`);
}

/** A malformed directive on line 3 (after a shebang and a valid directive) is refused naming line 3. */
function expectInvalidAtLine3(directive: string, mentions?: string): void {
  const error = parseError(script('#SWM name fine', directive));
  expect(error.code, directive).to.equal(ErrorCode.InvalidScript);
  expect(error.message, directive).to.match(/\bline 3\b/);
  if (mentions) expect(error.message, directive).to.include(mentions);
}

describe('job script parser (parseJobScript)', () => {
  describe('defaults', () => {
    it('gives a script without directives one node, no time limit, no ports, files, env, priority 0', () => {
      const { directives, warnings } = parseJobScript('#!/bin/sh\necho hello\n');
      expect(warnings).to.deep.equal([]);
      expect(directives).to.deep.equal({
        nodes: 1,
        durationSec: 0,
        ports: [],
        inputFiles: [],
        outputFiles: [],
        relocatable: false,
        env: {},
        priority: 0,
      });
    });

    it('ignores lines that are not #SWM directives, including other comments and #SWM inside text', () => {
      const d = directivesOf('# SWM name not-a-directive', 'echo "#SWM name nor-this"', '  #SWM name indented');
      expect(d.name).to.equal(undefined);
    });
  });

  describe('each directive', () => {
    it('name, comment, account, flavor, cloud-image, container-image', () => {
      const d = directivesOf(
        '#SWM name my job',
        '#SWM comment a free text comment',
        '#SWM account research-42',
        '#SWM flavor local.medium',
        '#SWM cloud-image Canonical:ubuntu-24_04-lts:server:latest',
        '#SWM container-image registry.example.org/team/app:1.2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
      );
      expect(d).to.include({
        name: 'my job',
        comment: 'a free text comment',
        account: 'research-42',
        flavor: 'local.medium',
        cloudImage: 'Canonical:ubuntu-24_04-lts:server:latest',
        containerImage: 'registry.example.org/team/app:1.2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
      });
    });

    it('accepts an empty comment', () => {
      expect(directivesOf('#SWM comment').comment).to.equal('');
    });

    it('gpus and nodes as whole numbers (gpus may be 0)', () => {
      expect(directivesOf('#SWM gpus 2', '#SWM nodes 3')).to.include({ gpus: 2, nodes: 3 });
      expect(directivesOf('#SWM gpus 0').gpus).to.equal(0);
    });

    it('ports: a comma list of PORT/tcp/in|out, over several lines', () => {
      const d = directivesOf('#SWM ports 8888/tcp/in, 5432/tcp/out', '#SWM ports 22/tcp/in');
      expect(d.ports).to.deep.equal([
        { port: 8888, protocol: 'tcp', direction: 'in' },
        { port: 5432, protocol: 'tcp', direction: 'out' },
        { port: 22, protocol: 'tcp', direction: 'in' },
      ]);
    });

    it('accepts the same port once in and once out', () => {
      expect(directivesOf('#SWM ports 8080/tcp/in,8080/tcp/out').ports).to.have.length(2);
    });

    it('input-files and output-files separated by spaces, commas or both', () => {
      const d = directivesOf('#SWM input-files a.txt b.txt,c.txt, data/d.csv', '#SWM output-files out/result.h5,log.txt', '#SWM input-files ./e.txt');
      expect(d.inputFiles).to.deep.equal(['a.txt', 'b.txt', 'c.txt', 'data/d.csv', 'e.txt']);
      expect(d.outputFiles).to.deep.equal(['out/result.h5', 'log.txt']);
    });

    it('reads list directives with nothing after them (input-files, output-files, ports) as empty lists, as the original did', () => {
      const d = directivesOf('#SWM input-files', '#SWM output-files ', '#SWM ports\t', '#SWM output-files out.txt');
      expect(d.inputFiles).to.deep.equal([]);
      expect(d.outputFiles).to.deep.equal(['out.txt']);
      expect(d.ports).to.deep.equal([]);
      expect(parseJobScript(script('#SWM output-files', '#SWM ports')).warnings).to.deep.equal([]);
    });

    it('workdir, submission-address, stdin, stdout, stderr', () => {
      const d = directivesOf(
        '#SWM workdir project/run-1',
        '#SWM submission-address 10.0.0.5',
        '#SWM stdin input.txt',
        '#SWM stdout out.log',
        '#SWM stderr err.log',
      );
      expect(d).to.include({ workdir: 'project/run-1', submissionAddress: '10.0.0.5', stdin: 'input.txt', stdout: 'out.log', stderr: 'err.log' });
    });

    it('relocatable alone, or with a boolean', () => {
      expect(directivesOf('#SWM relocatable').relocatable).to.equal(true);
      expect(directivesOf('#SWM relocatable yes').relocatable).to.equal(true);
      expect(directivesOf('#SWM relocatable false').relocatable).to.equal(false);
      expect(directivesOf('#SWM relocatable 0').relocatable).to.equal(false);
    });

    it('remote by name', () => {
      expect(directivesOf('#SWM remote azure-east').remote).to.equal('azure-east');
    });

    it('duration as HH:MM:SS, MM:SS, D-HH:MM:SS and plain seconds', () => {
      expect(directivesOf('#SWM duration 01:30:00').durationSec).to.equal(5400);
      expect(directivesOf('#SWM duration 45:30').durationSec).to.equal(45 * 60 + 30);
      expect(directivesOf('#SWM duration 1-02:03:04').durationSec).to.equal(86_400 + 2 * 3600 + 3 * 60 + 4);
      expect(directivesOf('#SWM duration 90').durationSec).to.equal(90);
      expect(directivesOf('#SWM duration 100:00:00').durationSec).to.equal(100 * 3600);
    });

    it('duration up to 365 days, past what one timer can hold (2^31-1 ms, about 24.8 days)', () => {
      expect(directivesOf('#SWM duration 25-00:00:00').durationSec).to.equal(25 * 86_400);
      expect(directivesOf('#SWM duration 365-00:00:00').durationSec).to.equal(MAX_DURATION_SEC);
    });

    it('env KEY=VALUE, the value keeping its own "=" and spaces', () => {
      const d = directivesOf('#SWM env MODE=fast', '#SWM env OPTS=--level=3 --verbose', '#SWM env EMPTY=');
      expect(d.env).to.deep.equal({ MODE: 'fast', OPTS: '--level=3 --verbose', EMPTY: '' });
    });

    it('run-on head or all (any case); absent means head', () => {
      expect(directivesOf().runOn).to.equal(undefined);
      expect(directivesOf('#SWM run-on all').runOn).to.equal('all');
      expect(directivesOf('#SWM run-on head').runOn).to.equal('head');
      expect(directivesOf('#SWM Run-On ALL').runOn).to.equal('all');
      expect(directivesOf('#SWM nodes 3', '#SWM run-on all')).to.include({ nodes: 3, runOn: 'all' });
    });

    it('keep-partition as whole seconds, 0 (delete at once) up to a year; absent leaves it to the remote', () => {
      expect(directivesOf().keepPartitionSec).to.equal(undefined);
      expect(directivesOf('#SWM keep-partition 0').keepPartitionSec).to.equal(0);
      expect(directivesOf('#SWM keep-partition 600').keepPartitionSec).to.equal(600);
      expect(directivesOf(`#SWM keep-partition ${MAX_KEEP_PARTITION_SEC}`).keepPartitionSec).to.equal(MAX_KEEP_PARTITION_SEC);
    });

    it('priority, negative allowed, clamped to ±1000', () => {
      expect(directivesOf('#SWM priority 10').priority).to.equal(10);
      expect(directivesOf('#SWM priority -5').priority).to.equal(-5);
      expect(directivesOf('#SWM priority 5000').priority).to.equal(1000);
      expect(directivesOf('#SWM priority -5000').priority).to.equal(-1000);
      expect(directivesOf().priority).to.equal(DEFAULT_PRIORITY);
    });

    it('keys in any case, trailing blanks and CRLF line ends', () => {
      const d = parseJobScript('#!/bin/sh\r\n#SWM NAME crlf job  \r\n#SWM Nodes 2\r\necho hi\r\n').directives;
      expect(d).to.include({ name: 'crlf job', nodes: 2 });
    });

    it('the last of a repeated single-valued directive wins', () => {
      expect(directivesOf('#SWM nodes 2', '#SWM nodes 4').nodes).to.equal(4);
    });
  });

  describe('unknown directives', () => {
    it('are accepted with a warning naming the directive and its line', () => {
      const { directives, warnings } = parseJobScript(script('#SWM nodes 2', '#SWM colour blue'));
      expect(directives.nodes).to.equal(2);
      expect(warnings).to.have.length(1);
      expect(warnings[0]).to.include('colour').and.to.match(/\bline 3\b/);
    });
  });

  describe('malformed directives are refused with InvalidScript naming the line', () => {
    const cases: [string, string][] = [
      ['#SWM', 'bare #SWM'],
      ['#SWMnodes 2', 'no space after #SWM'],
      ['#SWM name', 'name without a value'],
      ['#SWM account', 'account without a value'],
      ['#SWM flavor', 'flavor without a value'],
      ['#SWM cloud-image', 'cloud-image without a value'],
      ['#SWM container-image', 'container-image without a value'],
      ['#SWM container-image not an image', 'container-image with spaces'],
      ['#SWM container-image app;rm -rf /', 'container-image with shell characters'],
      ['#SWM gpus many', 'gpus not a number'],
      ['#SWM gpus -1', 'negative gpus'],
      ['#SWM gpus 65', 'gpus over the limit'],
      ['#SWM gpus 1.5', 'fractional gpus'],
      ['#SWM nodes 0', 'zero nodes'],
      ['#SWM nodes two', 'nodes not a number'],
      ['#SWM nodes 1001', 'nodes over the limit'],
      ['#SWM remote Azure_East', 'remote not a remote name'],
      ['#SWM remote', 'remote without a value'],
      ['#SWM duration', 'duration without a value'],
      ['#SWM duration soon', 'duration not a time'],
      ['#SWM duration 00:00:00', 'zero duration'],
      ['#SWM duration 1:2:3:4', 'too many fields'],
      ['#SWM duration 01:75:00', 'minutes over 59'],
      ['#SWM duration 01:00:75', 'seconds over 59'],
      ['#SWM duration -01:00:00', 'negative duration'],
      ['#SWM ports 8888', 'port without protocol and direction'],
      ['#SWM ports 8888/udp/in', 'port with a protocol other than tcp'],
      ['#SWM ports 8888/tcp/both', 'port with an unknown direction'],
      ['#SWM ports 0/tcp/in', 'port 0'],
      ['#SWM ports 70000/tcp/in', 'port over 65535'],
      ['#SWM ports 8888/tcp/in,,x', 'a bad entry after a good one'],
      ['#SWM workdir', 'workdir without a value'],
      ['#SWM workdir /home/user/project', 'an absolute workdir'],
      ['#SWM workdir run/../../x', 'a workdir escaping the job directory'],
      ['#SWM workdir .swm/x', "a workdir in the runner's own directory"],
      ['#SWM relocatable maybe', 'relocatable not a boolean'],
      ['#SWM submission-address', 'submission-address without a value'],
      ['#SWM stdin', 'stdin without a value'],
      ['#SWM stdout', 'stdout without a value'],
      ['#SWM stderr', 'stderr without a value'],
      ['#SWM env', 'env without a value'],
      ['#SWM env NOVALUE', 'env without "="'],
      ['#SWM env =value', 'env without a key'],
      ['#SWM env 1ABC=x', 'env key starting with a digit'],
      ['#SWM env MY-VAR=x', 'env key with a dash'],
      ['#SWM run-on', 'run-on without a value'],
      ['#SWM run-on some', 'run-on neither head nor all'],
      ['#SWM run-on all head', 'run-on with two values'],
      ['#SWM keep-partition', 'keep-partition without a value'],
      ['#SWM keep-partition -1', 'negative keep-partition'],
      ['#SWM keep-partition 1.5', 'fractional keep-partition'],
      ['#SWM keep-partition 10m', 'keep-partition with a unit'],
      [`#SWM keep-partition ${MAX_KEEP_PARTITION_SEC + 1}`, 'keep-partition over a year'],
      ['#SWM keep-partition 99999999999999999999', 'keep-partition of astronomical seconds'],
      ['#SWM priority high', 'priority not a number'],
      ['#SWM priority 1.5', 'fractional priority'],
      ['#SWM duration 366-00:00:00', 'duration over a year'],
      ['#SWM duration 99999999999999999999', 'duration of astronomical seconds'],
      ['#SWM container-image --privileged', 'container-image that is an option'],
      ['#SWM container-image -v', 'container-image that is a short option'],
      ['#SWM container-image alpine\t--privileged', 'container-image with a tab'],
      ['#SWM container-image alpine\x01', 'container-image with a control character'],
      ['#SWM container-image Alpine', 'container-image not in lower case'],
      ['#SWM container-image alpine:', 'container-image with an empty tag'],
      ['#SWM container-image alpine@sha256:abc', 'container-image with a short digest'],
      ['#SWM cloud-image --privileged', 'cloud-image that is an option'],
      ['#SWM cloud-image a\x01b', 'cloud-image with a control character'],
    ];
    for (const [directive, what] of cases) {
      it(`${what}: "${directive}"`, () => expectInvalidAtLine3(directive));
    }

    it('a port declared twice in the same direction (named with the line of the repetition)', () => {
      const error = parseError(script('#SWM ports 8888/tcp/in', '#SWM ports 8888/tcp/in'));
      expect(error.code).to.equal(ErrorCode.InvalidScript);
      expect(error.message).to.include('8888');
      expect(error.message).to.match(/\bline 3\b/);
    });

    it('carries the line number in the error data too', () => {
      const error = parseError(script('#SWM name fine', '#SWM nodes none'));
      expect(error.data).to.deep.equal({ line: 3 });
    });

    it('reports the first bad line when there are several', () => {
      const error = parseError(script('#SWM nodes x', '#SWM gpus y'));
      expect(error.message).to.match(/\bline 2\b/);
    });
  });

  describe('paths in input-files and output-files stay inside the job directory', () => {
    const escapes = ['/etc/passwd', '../secret', 'data/../../secret', '..', 'a/..'];
    for (const key of ['input-files', 'output-files']) {
      for (const path of escapes) {
        it(`refuses ${key} ${path}`, () => expectInvalidAtLine3(`#SWM ${key} ok.txt ${path}`, path));
      }
    }

    it('accepts names that merely contain dots', () => {
      expect(directivesOf('#SWM output-files .swmrc swm/.swm').outputFiles).to.deep.equal(['.swmrc', 'swm/.swm']);
      expect(directivesOf('#SWM input-files ..hidden a..b .config/x').inputFiles).to.deep.equal(['..hidden', 'a..b', '.config/x']);
    });
  });

  describe('stdin, stdout and stderr are files of the job directory, checked like inputs and outputs', () => {
    const refused = ['/etc/passwd', '/dev/tcp/127.0.0.1/22', '../outside.log', 'logs/../../outside.log', '.swm/exitcode', './.swm/pid', '.swm', '.', 'a\0b'];
    for (const key of ['stdin', 'stdout', 'stderr']) {
      for (const path of refused) {
        it(`refuses ${key} ${JSON.stringify(path)}`, () => expectInvalidAtLine3(`#SWM ${key} ${path}`, key));
      }
    }

    it('names what is wrong: an escape, the runner directory, a NUL byte', () => {
      expect(parseError(script('#SWM stdout /tmp/x')).message).to.include('inside the job directory');
      expect(parseError(script('#SWM stderr .swm/exitcode')).message).to.include("the runner's own directory");
      expect(parseError(script('#SWM stdin a\0b')).message).to.include('NUL byte').and.include('a\\0b');
    });

    it('accepts relative paths, with or without a leading ./', () => {
      expect(directivesOf('#SWM stdout logs/out.log', '#SWM stderr ./err.log', '#SWM stdin data/in.txt')).to.include({
        stdout: 'logs/out.log',
        stderr: 'err.log',
        stdin: 'data/in.txt',
      });
    });
  });

  describe('input-files: no NUL byte, no over-long name or path, nothing in the runner directory', () => {
    const long = 'n'.repeat(256);
    const cases: [string, string, string][] = [
      ['a\0b.txt', 'a NUL byte', 'NUL byte'],
      [long, 'a 256-byte name', 'longer than 255 bytes'],
      [`dir/${'é'.repeat(128)}`, 'a name of 128 characters but 256 bytes', 'longer than 255 bytes'],
      [Array.from({ length: 20 }, () => 'd'.repeat(250)).join('/'), 'a path over 4096 bytes', 'longer than 4096 bytes'],
      ['.swm/run.sh', 'the runner script', "the runner's own directory"],
      ['.swm', 'the runner directory itself', "the runner's own directory"],
      ['./.swm//job.sh', 'the runner directory behind ./ and //', "the runner's own directory"],
    ];
    for (const [path, what, mentions] of cases) {
      it(`refuses ${what}`, () => expectInvalidAtLine3(`#SWM input-files ok.txt ${path}`, mentions));
    }

    it('accepts a name of exactly 255 bytes', () => {
      expect(directivesOf(`#SWM input-files ${'n'.repeat(255)}`).inputFiles).to.deep.equal(['n'.repeat(255)]);
    });
  });

  describe('size and emptiness', () => {
    it('refuses a script over 16 MB with TooLarge', () => {
      const text = '#!/bin/sh\n' + 'x'.repeat(MAX_SCRIPT_BYTES);
      const error = parseError(text);
      expect(error.code).to.equal(ErrorCode.TooLarge);
      expect(error.message).to.include('16 MB');
    });

    it('counts bytes, not characters', () => {
      // 16 MB of characters, but each "é" is two bytes in UTF-8.
      const text = '#!/bin/sh\n#' + 'é'.repeat(MAX_SCRIPT_BYTES / 2);
      expect(text.length).to.be.lessThan(MAX_SCRIPT_BYTES);
      expect(parseError(text).code).to.equal(ErrorCode.TooLarge);
    });

    it('accepts a script of exactly 16 MB', () => {
      const head = '#!/bin/sh\n#SWM nodes 2\n';
      const text = head + '#'.repeat(MAX_SCRIPT_BYTES - head.length);
      expect(parseJobScript(text).directives.nodes).to.equal(2);
    });

    it('refuses an empty or blank script with InvalidScript', () => {
      expect(parseError('').code).to.equal(ErrorCode.InvalidScript);
      expect(parseError(' \n\t\n').code).to.equal(ErrorCode.InvalidScript);
    });
  });

  describe('parseDuration', () => {
    it('reads the forms of a time limit', () => {
      expect(parseDuration('00:00:01')).to.equal(1);
      expect(parseDuration('10:00')).to.equal(600);
      expect(parseDuration('2-00:00:00')).to.equal(2 * 86_400);
      expect(parseDuration('59')).to.equal(59);
    });

    it('returns null for what is not a duration', () => {
      for (const bad of ['', 'x', '1:2:3:4', '00:60:00', '00:00:60', '1-', '-1', '1.5']) expect(parseDuration(bad), bad).to.equal(null);
    });
  });
  describe('arrays (#SWM array)', () => {
    it('reads a range with a cap, a list of indices and ranges, and a range with a step', () => {
      expect(directivesOf('#SWM array 0-99%10').array).to.deep.include({ spec: '0-99%10', maxRunning: 10 });
      expect(directivesOf('#SWM array 0-99%10').array!.indices).to.have.length(100);
      expect(parseArraySpec('1,3,5-7')).to.deep.equal({ spec: '1,3,5-7', indices: [1, 3, 5, 6, 7], maxRunning: null });
      expect(parseArraySpec('0-20:5')).to.deep.include({ indices: [0, 5, 10, 15, 20] });
      expect(parseArraySpec('3,1,3')).to.deep.include({ indices: [1, 3] });
    });

    it(`refuses malformed specs, a %0 cap and more than ${MAX_ARRAY_TASKS} tasks, naming the line`, () => {
      for (const [spec, mentions] of [
        ['x', 'is not'],
        ['5-1', 'ends before it starts'],
        ['0-9%0', '1 or more'],
        ['0-9%', 'is not'],
        ['1,,2', 'is not an index'],
        ['-1', 'is not'],
        [`0-${MAX_ARRAY_TASKS}`, `more than ${MAX_ARRAY_TASKS} tasks`],
        ['0-4:0', 'step of 0'],
      ] as const)
        expectInvalidAtLine3(`#SWM array ${spec}`, mentions);
      expectInvalidAtLine3('#SWM array', 'needs a value');
    });

    it('refuses an array given twice', () => {
      expect(parseError(script('#SWM array 0-3', '#SWM array 0-4')).message).to.include('array given twice');
    });
  });

  describe('spot nodes (#SWM spot)', () => {
    it('reads spot, a maximum price, the fallback to on-demand, and no', () => {
      expect(directivesOf().spot).to.equal(undefined);
      expect(directivesOf('#SWM spot').spot).to.deep.equal({ fallback: false });
      expect(directivesOf('#SWM spot yes').spot).to.deep.equal({ fallback: false });
      expect(directivesOf('#SWM spot 0.05').spot).to.deep.equal({ maxPrice: 0.05, fallback: false });
      expect(directivesOf('#SWM spot 0.05 fallback').spot).to.deep.equal({ maxPrice: 0.05, fallback: true });
      expect(directivesOf('#SWM spot fallback').spot).to.deep.equal({ fallback: true });
      expect(directivesOf('#SWM spot no').spot).to.equal(false);
    });

    it('refuses anything else, naming the line', () => {
      for (const bad of ['#SWM spot cheap', '#SWM spot 0', '#SWM spot -1', '#SWM spot 0.1 0.2', '#SWM spot no fallback']) expectInvalidAtLine3(bad, 'spot');
    });
  });

  describe('dependencies (#SWM depends)', () => {
    const A = '6f1c2b7e-8d4a-4c1e-9b2f-0a1b2c3d4e5f';
    const B = '7a2d3c8f-9e5b-4d2f-8c3a-1b2c3d4e5f60';
    it('reads afterok, afterany and afternotok with one or more ids, several clauses and lines', () => {
      expect(directivesOf(`#SWM depends afterok:${A}:${B}`).depends).to.deep.equal([{ kind: 'afterok', jobIds: [A, B] }]);
      expect(directivesOf(`#SWM depends afterany:${A},afternotok:${B}`, `#SWM depends afterok:${B}`).depends).to.deep.equal([
        { kind: 'afterany', jobIds: [A] },
        { kind: 'afternotok', jobIds: [B] },
        { kind: 'afterok', jobIds: [B] },
      ]);
      expect(parseDependencies(`AFTEROK:${A.toUpperCase()}`)).to.deep.equal([{ kind: 'afterok', jobIds: [A] }]);
    });

    it('refuses unknown kinds, clauses without ids and ids that are not full job ids', () => {
      expectInvalidAtLine3(`#SWM depends after:${A}`, 'is not afterok:ID');
      expectInvalidAtLine3('#SWM depends afterok', 'names no job');
      expectInvalidAtLine3('#SWM depends afterok:3f2b', 'is not a full job id');
      expectInvalidAtLine3('#SWM depends', 'needs a value');
    });
  });
});
