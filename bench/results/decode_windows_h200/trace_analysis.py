"""Reads the traces trace.sh writes (trace.patch: a uint32 count, then per warp of the decode
step's kernels {t0, t_wait, t_end: uint64 ns of %globaltimer; tag = kind | warp << 8 | smid << 16;
block}) and prints, averaged over the 32 layers of the last whole step, when each kernel's first
warp started, passed its wait and when its last warp ended, relative to the kernel before it.
Kinds: 0 logits product, 1 QKV + fc1 pair, 2 dense + fc2 sum, 3 attention split, 4 merge,
5 add + LayerNorm. Usage: python3 trace_analysis.py trace_512.bin trace_1920.bin"""
import struct,sys,collections,statistics
names={0:'logits',1:'pair',2:'sum',3:'split',4:'merge',5:'ln'}
for fn in sys.argv[1:]:
    b=open(fn,'rb').read(); n=struct.unpack('<I',b[:4])[0]
    recs=list(struct.iter_unpack('<QQQII',b[4:4+32*n]))
    bykind=collections.defaultdict(list)
    for t0,tw,t1,tag,blk in recs: bykind[tag&0xff].append((t0,tw,t1))
    launches=[]
    for k,lst in bykind.items():
        lst.sort()
        seg=[lst[0]]
        def close(seg):
            tws=[r[1] for r in seg if r[1]>0]
            launches.append(dict(kind=names.get(k,str(k)),start=seg[0][0],w0=min(tws) if tws else 0,w1=max(tws) if tws else 0,e0=min(r[2] for r in seg),end=max(r[2] for r in seg),n=len(seg)))
        for r in lst[1:]:
            if r[0]-seg[-1][0]>25000: close(seg); seg=[r]
            else: seg.append(r)
        close(seg)
    launches.sort(key=lambda l:l['start'])
    lg=[i for i,l in enumerate(launches) if l['kind']=='logits']
    s,e=lg[-2],lg[-1]
    step=launches[s+1:e+1]
    print(fn,'step span us %.1f'%((launches[e]['end']-launches[s]['end'])/1000),'launches',len(step), [l['kind'] for l in step[:7]])
    layers=[]
    for i in range(1,len(step)-4):
        if [x['kind'] for x in step[i-1:i+5]]==['ln','pair','split','merge','sum','ln']: layers.append(step[i-1:i+5])
    keys=collections.OrderedDict()
    def add(k,v): keys.setdefault(k,[]).append(v/1000)
    for ln0,pair,split,merge,sm,ln1 in layers:
        add('pair: first start - LN end', pair['start']-ln0['end'])
        add('LN end -> pair first wait', pair['w0']-ln0['end'])
        add('pair: first wait -> end', pair['end']-pair['w0'])
        add('pair: first block end -> last', pair['end']-pair['e0'])
        add('split: first start - pair end', split['start']-pair['end'])
        add('pair end -> split first wait', split['w0']-pair['end'])
        add('split: first wait -> end', split['end']-split['w0'])
        add('split end -> merge first wait', merge['w0']-split['end'])
        add('merge: first wait -> end', merge['end']-merge['w0'])
        add('sum: first start - merge end', sm['start']-merge['end'])
        add('merge end -> sum first wait', sm['w0']-merge['end'])
        add('sum: first wait -> end', sm['end']-sm['w0'])
        add('sum: first block end -> last', sm['end']-sm['e0'])
        add('LN: start - sum end', ln1['start']-sm['end'])
        add('sum end -> LN wait', ln1['w0']-sm['end'])
        add('LN: wait -> end', ln1['end']-ln1['w0'])
        add('layer (LN end -> LN end)', ln1['end']-ln0['end'])
    print(' layers',len(layers))
    for k,v in keys.items(): print(f'  {k:34s} mean {statistics.mean(v):6.2f} us  (min {min(v):6.2f}, max {max(v):6.2f})')
